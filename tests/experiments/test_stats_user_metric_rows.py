"""Per-user metric rows from PostgreSQL's binary COPY, without a database: the layout is built by hand here."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from experiments.stats.aggregates import METRIC_SUMS, UserMetricRows, user_metric_rows_from_copy


def binary_copy(rows: list[tuple]) -> bytes:
    """PostgreSQL's binary COPY of (arm, 6 sums, 6 pre-period sums): bigint fields, the seconds as double."""
    out = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 4) + b"xxxx")  # a 4-byte header extension
    for row in rows:
        out += struct.pack(">h", 13)
        for index, value in enumerate(row):
            out += struct.pack(">id", 8, value) if index in (6, 12) else struct.pack(">iq", 8, value)
    return bytes(out + struct.pack(">h", -1))


def test_rows_are_split_by_arm_with_post_and_pre_columns():
    data = binary_copy([(5, 10, 2, 2, 1, 1, 72.5, 8, 2, 2, 1, 1, 50.0),
                        (6, 4, 2, 1, 0, 1, 29.5, 0, 0, 0, 0, 0, 0.0),
                        (5, 3, 0, 0, 0, 0, 0.0, 1, 1, 1, 1, 0, 1e6)])
    rows = user_metric_rows_from_copy(data, arm_ids=[5, 6, 7])
    assert rows[5].post.tolist() == [[10, 2, 2, 1, 1, 72.5], [3, 0, 0, 0, 0, 0.0]]
    assert rows[5].pre.tolist() == [[8, 2, 2, 1, 1, 50.0], [1, 1, 1, 1, 0, 1e6]]
    assert rows[6].column("listened_seconds").tolist() == [29.5] and not rows[6].has_pre.any()
    assert rows[5].column("clicks", pre=True).tolist() == [2, 1] and rows[5].has_pre.all()
    assert rows[7].users == 0 and rows[7].post.shape == (0, len(METRIC_SUMS))
    assert set(user_metric_rows_from_copy(data)) == {5, 6}
    columns = rows[5].columns()
    assert list(columns) == [*METRIC_SUMS, *(f"pre_{name}" for name in METRIC_SUMS)]
    assert columns["listened_seconds"].tolist() == [72.5, 0.0] and columns["pre_plays"].tolist() == [2, 1]


def test_no_rows_and_bad_data():
    assert user_metric_rows_from_copy(binary_copy([])) == {}
    with pytest.raises(ValueError, match="binary COPY"):
        user_metric_rows_from_copy(b"5\t10\t2\n")
    with pytest.raises(ValueError, match="shape"):
        user_metric_rows_from_copy(binary_copy([(5,) + (1,) * 12])[:-3] + b"\xff\xff")
    with pytest.raises(ValueError, match="users, 6"):
        UserMetricRows(1, np.zeros((2, 5)), np.zeros((2, 5)))
