"""Writes of the embedding side: feature cache, model registry, activation, catalog indexing.

The ML itself (backbone, pooling, towers, training) lives in ``recommender.crossmusim``;
this module only loads rows and files, calls it, and stores what it returns.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from recommender.crossmusim.audio_io import AudioReadError, load_mono
from recommender.models import EmbeddingModel, Track, TrackEmbedding
from recommender.selectors import embedding_model_next_version
from recommender.vector_search import create_hnsw_index, drop_hnsw_index

Progress = Callable[[Iterable], Iterable]
DEFAULT_BACKBONE = "MTT_musicnn"
HNSW_MAX_DIM = 2000  # pgvector indexes `vector` columns of at most 2,000 dimensions with HNSW
FEATURE_SAMPLE_RATE = 16_000


def no_progress(items: Iterable) -> Iterable:
    return items


# --- feature cache ----------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureCache:
    """Per-track patch features of one backbone, one ``.npy`` per audio checksum.

    Keyed by the audio checksum rather than the track id, so that a rebuilt database
    (or a test database) finds the features of the same audio again.
    """

    root: Path

    def path_for(self, checksum: str) -> Path:
        return self.root / checksum[:2] / f"{checksum}.npy"

    def has(self, checksum: str) -> bool:
        return self.path_for(checksum).exists()

    def load(self, checksum: str) -> np.ndarray:
        return np.load(self.path_for(checksum))

    def save(self, checksum: str, features: np.ndarray) -> Path:
        """Write atomically (temp file + rename) so an interrupted run never leaves a torn file."""
        path = self.path_for(checksum)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npy")
        try:
            with os.fdopen(handle, "wb") as temp:
                np.save(temp, np.asarray(features, dtype=np.float32))
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return path


def feature_cache(backbone: str = DEFAULT_BACKBONE, root: Path | None = None) -> FeatureCache:
    return FeatureCache(Path(root or Path(settings.MODELS_DIR) / "features") / backbone)


@dataclass
class FeatureExtractionReport:
    extracted: int = 0
    cached: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def audio_features_extract(
    *,
    tracks: Iterable[Track],
    extractor_factory: Callable[[], object],
    cache: FeatureCache,
    progress: Progress = no_progress,
    batch_tracks: int = 8,
    transform: Callable[[Track, np.ndarray], np.ndarray] | None = None,
) -> FeatureExtractionReport:
    """Compute and cache the backbone's patch features of every track not cached yet.

    ``transform(track, wave)``, when given, changes each waveform before the backbone hears it (the timbre
    views of ``timbre_views``: there ``tracks`` are views, each with its own cache key as ``checksum``).

    The extractor (``patch_features(wave16k) -> [n_patches, D]``, optionally
    ``extract_patch_features_batch(waves)``) is built only if some track is missing, and runs
    ``batch_tracks`` tracks at a time (patches of several tracks share a forward pass). A file that
    cannot be read or embedded is reported by name and skipped; the run goes on.
    """
    report = FeatureExtractionReport()
    started = time.perf_counter()
    extractor = None
    pending: list[tuple[Track, np.ndarray]] = []

    def flush() -> None:
        nonlocal extractor
        if not pending:
            return
        extractor = extractor or extractor_factory()
        batch = getattr(extractor, "extract_patch_features_batch", None)
        try:
            results = batch([wave for _, wave in pending]) if batch and len(pending) > 1 else None
        except (ValueError, RuntimeError):
            results = None  # one bad input spoils the batch: redo one by one to name it
        for index, (track, wave) in enumerate(pending):
            try:
                features = results[index] if results is not None else extractor.patch_features(wave)
                features = np.asarray(features, dtype=np.float32)
                if features.ndim != 2 or features.shape[0] == 0:
                    raise ValueError(f"backbone returned shape {features.shape}, expected [n_patches, D]")
            except (ValueError, RuntimeError) as error:
                report.failed.append((track.audio_path, str(error)))
                continue
            cache.save(track.checksum, features)
            report.extracted += 1
        pending.clear()

    for track in progress(list(tracks)):
        if cache.has(track.checksum):
            report.cached += 1
            continue
        try:
            wave, _ = load_mono(Path(track.audio_path), target_rate=FEATURE_SAMPLE_RATE)
        except (AudioReadError, OSError, ValueError) as error:
            report.failed.append((track.audio_path, str(error)))
            continue
        pending.append((track, transform(track, wave) if transform is not None else wave))
        if len(pending) >= batch_tracks:
            flush()
    flush()
    report.seconds = time.perf_counter() - started
    return report


# --- registry and activation --------------------------------------------------------------


def embedding_model_register(
    *,
    name: str,
    kind: str,
    dim: int,
    tower: str = "",
    config: dict | None = None,
    metrics: dict | None = None,
    checkpoint_path: str | Path = "",
) -> EmbeddingModel:
    """A new version of ``name`` (1 + the latest), retried if a concurrent run took the number."""
    for _ in range(5):
        try:
            with transaction.atomic():
                return EmbeddingModel.objects.create(
                    name=name, version=embedding_model_next_version(name), kind=kind, dim=int(dim), tower=tower,
                    config=config or {}, metrics=metrics or {}, checkpoint_path=str(checkpoint_path),
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"could not allocate a version for {name!r}")


class ActivationError(ValueError):
    """The model cannot serve that arm (unknown arm, or not indexed)."""


def embedding_model_activate(*, model: EmbeddingModel, arm: str) -> EmbeddingModel:
    """Make ``model`` the one model serving ``arm``; the previous one is released in the same transaction."""
    if arm not in EmbeddingModel.Kind.values:
        raise ActivationError(f"unknown arm {arm!r}; choose one of {', '.join(EmbeddingModel.Kind.values)}")
    if model.indexed_at is None:
        raise ActivationError(f"{model} has no index yet; run index_embeddings {model.pk} first")
    with transaction.atomic():
        # Lock the rows involved so two activations of the same arm serialise.
        list(EmbeddingModel.objects.select_for_update().filter(active_for_arm=arm).exclude(pk=model.pk))
        EmbeddingModel.objects.filter(active_for_arm=arm).exclude(pk=model.pk).update(active_for_arm=None)
        EmbeddingModel.objects.filter(pk=model.pk).update(active_for_arm=arm)
    model.refresh_from_db()
    return model


# --- vectors and the HNSW index --------------------------------------------------------------


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def _binary_copy_rows(model_id: int, track_ids: Sequence[int], vectors: np.ndarray) -> bytes:
    """A COPY ... (FORMAT BINARY) stream of (model_id, track_id, vector) rows.

    pgvector's binary ``vector`` is int16 dim, int16 unused, then big-endian float32s; writing it
    straight from numpy avoids formatting millions of floats as text (15 s -> well under 1 s for
    1,859 x 3,012).
    """
    dim = vectors.shape[1]
    row = np.dtype([("fields", ">i2"), ("model_len", ">i4"), ("model", ">i8"), ("track_len", ">i4"),
                    ("track", ">i8"), ("vector_len", ">i4"), ("dim", ">i2"), ("unused", ">i2"),
                    ("values", ">f4", (dim,))])
    rows = np.zeros(len(track_ids), dtype=row)
    rows["fields"], rows["model_len"], rows["track_len"] = 3, 8, 8
    rows["model"], rows["track"] = model_id, np.asarray(track_ids, dtype=np.int64)
    rows["vector_len"], rows["dim"], rows["values"] = 4 + 4 * dim, dim, vectors
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


@dataclass
class IndexReport:
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    feature_seconds: float = 0.0  # loading (and extracting missing) backbone features
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    index_seconds: float = 0.0
    index_error: str = ""  # why no HNSW index was built (KNN then scans this model's rows exactly)


def track_embeddings_write(
    *, model: EmbeddingModel, track_ids: Sequence[int], vectors: np.ndarray, report: IndexReport | None = None
) -> IndexReport:
    """Replace ``model``'s vectors with these (COPY), rebuild its HNSW index, stamp ``indexed_at``."""
    report = report or IndexReport()
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(track_ids), model.dim):
        raise ValueError(f"expected vectors of shape ({len(track_ids)}, {model.dim}), got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinity")
    table = TrackEmbedding._meta.db_table
    with transaction.atomic():
        started = time.perf_counter()
        TrackEmbedding.objects.filter(model=model).delete()
        copy_sql = f"COPY {table} (model_id, track_id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        with connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
            copy.write(_binary_copy_rows(model.pk, track_ids, vectors))
        report.write_seconds = time.perf_counter() - started
        started = time.perf_counter()
        # Dropping an index locks the whole table (serving reads too) until commit: do it last, just before
        # the rebuild, so re-indexing a live model blocks readers only for the build itself.
        drop_hnsw_index(model)
        try:
            with transaction.atomic():
                create_hnsw_index(model)
        except DatabaseError as error:
            # pgvector's HNSW takes at most 2,000 dimensions of `vector`; wider models are searched exactly.
            report.index_error = str(error).splitlines()[0]
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
        report.index_seconds = time.perf_counter() - started
        EmbeddingModel.objects.filter(pk=model.pk).update(indexed_at=timezone.now())
    report.written = len(track_ids)
    model.refresh_from_db()
    return report


def cached_features(
    *, tracks: Sequence[Track], cache: FeatureCache, extractor_factory: Callable[[], object] | None = None,
    progress: Progress = no_progress, transform: Callable[[Track, np.ndarray], np.ndarray] | None = None,
) -> tuple[list[Track], list[np.ndarray], FeatureExtractionReport]:
    """The cached patch features of ``tracks``; missing ones are extracted first when a factory is given.

    Returns the tracks that have features (in order), their features, and the extraction report
    (which names every track skipped).
    """
    missing = [t for t in tracks if not cache.has(t.checksum)]
    report = FeatureExtractionReport(cached=len(tracks) - len(missing))
    if missing and extractor_factory is not None:
        extracted = audio_features_extract(tracks=missing, extractor_factory=extractor_factory, cache=cache,
                                           progress=progress, transform=transform)
        report.extracted, report.failed, report.seconds = extracted.extracted, extracted.failed, extracted.seconds
    elif missing:
        report.failed = [(t.audio_path, "no cached features; run extract_audio_features") for t in missing]
    kept = [t for t in tracks if cache.has(t.checksum)]
    return kept, [cache.load(t.checksum) for t in kept], report


def catalog_index(
    *,
    model: EmbeddingModel,
    tracks: Sequence[Track],
    extractor_factory: Callable[[], object] | None = None,
    batch_size: int = 256,
    progress: Progress = no_progress,
) -> IndexReport:
    """Embed every track with ``model`` and replace its vectors and HNSW index.

    Features come from the model's backbone cache (extracted on the way when missing);
    a track whose audio cannot be read is named in ``report.skipped``.
    """
    from recommender.services.embedding_runtime import audio_embed

    cache = feature_cache(model.config.get("backbone", DEFAULT_BACKBONE))
    started = time.perf_counter()
    kept, features, extraction = cached_features(tracks=tracks, cache=cache, extractor_factory=extractor_factory,
                                                 progress=progress)
    report = IndexReport(skipped=list(extraction.failed), feature_seconds=time.perf_counter() - started)
    if not kept:
        raise ValueError(f"no track of {len(tracks)} has features to embed with {model}")
    started = time.perf_counter()
    chunks = [audio_embed(model, features[i:i + batch_size]) for i in range(0, len(kept), batch_size)]
    vectors = np.concatenate(chunks)
    report.embed_seconds = time.perf_counter() - started
    return track_embeddings_write(model=model, track_ids=[t.pk for t in kept], vectors=vectors, report=report)
