"""Read TensorFlow checkpoints (tensor bundle format V2) with numpy alone.

musicnn ships its weights as TensorFlow-1 checkpoints. Installing TensorFlow to read
~10 MB of floats once would cost a gigabyte and pin numpy, so this module reads the
format directly:

- ``<prefix>.index`` is a LevelDB-style SSTable (uncompressed blocks). Its keys are the
  variable names; the empty key holds a ``BundleHeaderProto`` (number of shards,
  endianness) and every other value is a ``BundleEntryProto`` (dtype, shape, shard_id,
  offset, size) telling where the raw tensor bytes sit.
- ``<prefix>.data-SSSSS-of-NNNNN`` holds the tensors as raw bytes, back to back.

Only the few protobuf fields the format needs are decoded, by a tiny wire-format parser,
so neither TensorFlow nor the protobuf package is needed at run time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# LevelDB table footer: two block handles padded to 40 bytes, then the 8-byte magic.
_FOOTER_SIZE = 48
_TABLE_MAGIC = 0xDB4775248B80FB57
_BLOCK_TRAILER_SIZE = 5  # 1 byte compression type + 4 bytes masked crc32c

# tensorflow/core/framework/types.proto DataType -> numpy dtype (little-endian).
_DTYPES: dict[int, str] = {
    1: "<f4",  # DT_FLOAT
    2: "<f8",  # DT_DOUBLE
    3: "<i4",  # DT_INT32
    4: "u1",  # DT_UINT8
    5: "<i2",  # DT_INT16
    6: "i1",  # DT_INT8
    9: "<i8",  # DT_INT64
    10: "?",  # DT_BOOL
    17: "<u2",  # DT_UINT16
    19: "<f2",  # DT_HALF
    22: "<u4",  # DT_UINT32
    23: "<u8",  # DT_UINT64
}


class CheckpointFormatError(ValueError):
    """The files are not a readable TensorFlow V2 checkpoint; the message says why."""


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives in the data shards (a decoded ``BundleEntryProto``)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointFormatError("varint too long")


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode one protobuf message into (field number, value) pairs, in order.

    Varints come back as ints, length-delimited fields as bytes; fixed-width fields
    (crc32c, etc.) are skipped because nothing here needs them.
    """
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
            fields.append((number, value))
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            fields.append((number, buf[pos : pos + length]))
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire_type}")
    if pos != len(buf):
        raise CheckpointFormatError("truncated protobuf message")
    return fields


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """``TensorShapeProto``: repeated ``dim`` (field 2) each with ``size`` (field 1)."""
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2:
            size = 0
            for dim_number, dim_value in _proto_fields(value):  # type: ignore[arg-type]
                if dim_number == 1:
                    size = int(dim_value)  # type: ignore[arg-type]
            dims.append(size)
        elif number == 3 and value:
            raise CheckpointFormatError("tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> BundleEntry:
    values: dict[int, int | bytes] = {}
    for number, value in _proto_fields(buf):
        if number == 7:
            raise CheckpointFormatError(f"{name}: partitioned (sliced) variables are not supported")
        values[number] = value
    shape_buf = values.get(2, b"")
    return BundleEntry(
        name=name,
        dtype=int(values.get(1, 0)),  # type: ignore[arg-type]
        shape=_parse_shape(shape_buf) if isinstance(shape_buf, bytes) else (),
        shard_id=int(values.get(3, 0)),  # type: ignore[arg-type]
        offset=int(values.get(4, 0)),  # type: ignore[arg-type]
        size=int(values.get(5, 0)),  # type: ignore[arg-type]
    )


def _read_block(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """Decode one SSTable block into its (key, value) entries.

    Entries are prefix-compressed: each stores the number of key bytes shared with the
    previous key, the unshared suffix and the value. A restart array closes the block.
    """
    if offset + size + _BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointFormatError("block handle points past the end of the index file")
    compression = table[offset + size]
    if compression != 0:
        raise CheckpointFormatError(f"compressed index blocks (type {compression}) are not supported")
    block = table[offset : offset + size]
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _read_varint(block, pos)
        unshared, pos = _read_varint(block, pos)
        value_length, pos = _read_varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def _read_table(path: Path) -> list[tuple[bytes, bytes]]:
    table = path.read_bytes()
    if len(table) < _FOOTER_SIZE:
        raise CheckpointFormatError(f"{path}: too short to be a checkpoint index")
    footer = table[-_FOOTER_SIZE:]
    magic_low, magic_high = struct.unpack_from("<II", footer, _FOOTER_SIZE - 8)
    if (magic_high << 32) | magic_low != _TABLE_MAGIC:
        raise CheckpointFormatError(f"{path}: not an SSTable (bad magic number)")
    _metaindex_offset, pos = _read_varint(footer, 0)
    _metaindex_size, pos = _read_varint(footer, pos)
    index_offset, pos = _read_varint(footer, pos)
    index_size, pos = _read_varint(footer, pos)
    entries: list[tuple[bytes, bytes]] = []
    for _separator, handle in _read_block(table, index_offset, index_size):
        block_offset, hpos = _read_varint(handle, 0)
        block_size, _ = _read_varint(handle, hpos)
        entries.extend(_read_block(table, block_offset, block_size))
    return entries


class CheckpointReader:
    """Random access to the tensors of one TensorFlow V2 checkpoint.

    ``prefix`` is what TensorFlow calls the checkpoint path: the index is
    ``prefix + ".index"``. musicnn's prefixes end in ``/`` (files named ``.index``).
    """

    def __init__(self, prefix: str | Path):
        self.prefix = str(prefix)
        index_path = Path(self.prefix + ".index")
        if not index_path.is_file():
            raise CheckpointFormatError(f"{index_path}: checkpoint index not found")
        self.num_shards = 1
        self.entries: dict[str, BundleEntry] = {}
        for key, value in _read_table(index_path):
            if key == b"":
                header = dict(_proto_fields(value))
                self.num_shards = int(header.get(1, 1))  # type: ignore[arg-type]
                if int(header.get(2, 0)) != 0:  # type: ignore[arg-type]
                    raise CheckpointFormatError(f"{index_path}: big-endian checkpoints are not supported")
                continue
            name = key.decode("utf-8")
            self.entries[name] = _parse_entry(name, value)
        self._shards: dict[int, bytes] = {}

    def shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def _shard(self, shard_id: int) -> bytes:
        if shard_id not in self._shards:
            path = self.shard_path(shard_id)
            if not path.is_file():
                raise CheckpointFormatError(f"{path}: checkpoint data shard not found")
            self._shards[shard_id] = path.read_bytes()
        return self._shards[shard_id]

    def names(self) -> list[str]:
        return sorted(self.entries)

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor as a fresh numpy array of its stored dtype and shape."""
        try:
            entry = self.entries[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in checkpoint {self.prefix}") from None
        if entry.dtype not in _DTYPES:
            raise CheckpointFormatError(f"{name}: unsupported dtype enum {entry.dtype}")
        dtype = np.dtype(_DTYPES[entry.dtype])
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            expected = count * dtype.itemsize
            raise CheckpointFormatError(
                f"{name}: {entry.size} bytes stored for {entry.shape} {dtype}, {expected} expected"
            )
        data = self._shard(entry.shard_id)
        if entry.offset + entry.size > len(data):
            raise CheckpointFormatError(f"{name}: tensor lies past the end of its data shard")
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=entry.offset)
        return flat.reshape(entry.shape).copy()


def read_checkpoint(prefix: str | Path, skip_suffixes: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint by name, leaving out names ending in ``skip_suffixes``.

    Pass ``skip_suffixes=("/Adam", "/Adam_1")`` to drop optimiser slots.
    """
    reader = CheckpointReader(prefix)
    return {name: reader.tensor(name) for name in reader.names() if not name.endswith(skip_suffixes)}
