"""Build the demo catalog: select, parse (cached), group works, render, split, write the metadata table.

Plain Python (no Django): the service in ``recommender/services/democatalog.py`` calls
``build_demo_catalog`` and loads the result with ``ingest_catalog``, the same path as a
user's catalog.

Speed: parsing is the slow part, so each parsed work is pickled under the cache folder,
keyed by the music21 version and the score's text; a rerun or a different ``--size``
parses only what it has not seen. A rendered file is reused when its render job is
unchanged (a manifest beside the audio records each file's job hash), so an unchanged
rerun touches no audio at all and the files keep their checksums.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import random
import re
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .candidates import Candidate, chorale_title, ordered_candidates
from .dedup import assign_work_ids
from .instruments import ENSEMBLES
from .keys import refine_key
from .parse import PARSE_SCHEMA, ParsedWork, ParseError, ParseTimeoutError, parse_candidate
from .plan import (
    RenderJob,
    choose_ensemble,
    excerpt_count,
    excerpt_start_q,
    render_job,
    seconds_per_quarter,
    tempo_bpm,
)
from .render import SAMPLE_RATE, RenderError, Synthesizer, find_soundfont, finish, write_wav
from .splits import SplitItem, assign_splits
from .styles import STYLES, StyleSpec, heldout_styles

RENDER_SCHEMA = 1
MANIFEST = ".render-manifest.json"
METADATA_JSON = "metadata.json"
METADATA_CSV = "metadata.csv"
SPLITS_CSV = "splits.csv"
SELECTION_ROUNDS = 6


def corpus_root() -> Path:
    import music21

    return Path(music21.__file__).resolve().parent / "corpus"


def corpus_version() -> str:
    import music21

    return f"music21-{music21.__version__}"


@dataclass
class BuildConfig:
    size: int
    seed: int = 0
    out_dir: Path = Path("var/catalog/demo")
    cache_dir: Path = Path("var/democache")
    workers: int = 2
    excerpt_s: float = 25.0
    soundfont: str | None = None
    soundfont_fallback: str | None = None  # tried when ``soundfont`` is unset or no file: the SOUNDFONT setting
    parse_timeout_s: float = 30.0  # CPU seconds per score
    styles: Sequence[StyleSpec] = STYLES
    corpus: Path | None = None
    progress: bool = True


@dataclass
class BuiltTrack:
    file: str  # relative to out_dir
    title: str
    composer: str
    collection: str
    document_text: str
    labels: dict
    metadata: dict


@dataclass
class BuildReport:
    out_dir: Path
    tracks: list[BuiltTrack] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (score or file, reason)
    splits: dict[str, dict[str, str]] = field(default_factory=dict)  # split name -> file -> part
    parsed: int = 0
    parse_cached: int = 0
    rendered: int = 0
    render_reused: int = 0
    removed_files: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def metadata_file(self) -> Path:
        return self.out_dir / METADATA_JSON


# ---------------------------------------------------------------- parsing (cached, parallel)

def _cache_path(cache_dir: Path, candidate: Candidate) -> Path:
    digest = hashlib.sha1(candidate.key.encode())
    if candidate.kind == "abc":
        digest.update(candidate.abc_text.encode())
    else:
        stat = os.stat(candidate.path)
        digest.update(f"{stat.st_size}".encode())
    return cache_dir / f"{digest.hexdigest()}.pkl"


def _parse_into_cache(args: tuple[Candidate, str, float]) -> tuple[str, ParsedWork | None, str]:
    candidate, cache_file, timeout = args
    try:
        result: ParsedWork | str = parse_candidate(candidate, timeout)
    except ParseTimeoutError as error:
        return candidate.key, None, str(error)
    except ParseError as error:
        result = str(error)
    partial = f"{cache_file}.{os.getpid()}.part"
    with open(partial, "wb") as handle:
        pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, cache_file)
    return (candidate.key, None, result) if isinstance(result, str) else (candidate.key, result, "")


def _read_cache(path: Path) -> ParsedWork | str | None:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None


def _pool(workers: int, initializer=None, initargs=()):
    """fork: children inherit the imported music21 and start at once; they never touch a DB connection.

    Except after torch has run in this process: its OpenMP thread pool does not survive a fork, and
    a child whose SoundFont loader then enters OpenMP waits forever (seen in a test run that mined
    text before building the catalog). Then the children come from a fresh forkserver instead.
    """
    method = "forkserver" if "torch" in sys.modules else "fork"
    context = multiprocessing.get_context(method)
    return context.Pool(processes=workers, initializer=initializer, initargs=initargs)


def parse_all(candidates: list[Candidate], config: BuildConfig, report: BuildReport,
              progress: Callable) -> dict[str, ParsedWork]:
    """Parse every candidate not yet cached; return key -> ParsedWork; failures go to ``report.skipped``."""
    cache_dir = Path(config.cache_dir) / f"{corpus_version()}-schema{PARSE_SCHEMA}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    parsed: dict[str, ParsedWork] = {}
    todo = []
    for candidate in candidates:
        path = _cache_path(cache_dir, candidate)
        cached = _read_cache(path) if path.exists() else None
        if isinstance(cached, ParsedWork):
            parsed[candidate.key] = cached
            report.parse_cached += 1
        elif isinstance(cached, str):
            report.skipped.append((candidate.key, f"parse failed: {cached}"))
            report.parse_cached += 1
        else:
            todo.append((candidate, str(path), config.parse_timeout_s))
    if not todo:
        return parsed
    if config.workers > 1 and len(todo) > 4:
        with _pool(config.workers) as pool:
            results = list(progress(pool.imap_unordered(_parse_into_cache, todo, chunksize=2),
                                    total=len(todo), desc="parse"))
    else:
        results = [_parse_into_cache(item) for item in progress(todo, total=len(todo), desc="parse")]
    for key, work, error in results:
        report.parsed += 1
        if work is None:
            report.skipped.append((key, f"parse failed: {error}"))
        else:
            parsed[key] = work
    return parsed


# ---------------------------------------------------------------- selection

def style_quotas(size: int, styles: Sequence[StyleSpec]) -> dict[str, int]:
    base, extra = divmod(size, len(styles))
    return {spec.style: base + (1 if index < extra else 0) for index, spec in enumerate(styles)}


@dataclass
class PlannedTrack:
    candidate: Candidate
    work: ParsedWork
    spec: StyleSpec
    excerpt: int
    excerpts: int
    seconds_per_q: float


def _work_plan(candidate: Candidate, work: ParsedWork, spec: StyleSpec, config: BuildConfig,
               wanted_excerpts: int) -> list[PlannedTrack]:
    rng = random.Random(f"{config.seed}:tempo:{candidate.key}")
    spq = seconds_per_quarter(work, spec, rng)
    count = min(wanted_excerpts, excerpt_count(work, spec, spq, config.excerpt_s))
    return [PlannedTrack(candidate, work, spec, index, count, spq) for index in range(count)]


def select_tracks(config: BuildConfig, report: BuildReport, progress: Callable) -> list[PlannedTrack]:
    """Take each style's quota from its seeded candidate order, parsing more where scores fail.

    A style that runs out of works (few long pieces, every excerpt taken) hands what it
    lacks to the styles that still have works, so the catalog reaches its size.
    """
    root = Path(config.corpus) if config.corpus else corpus_root()
    quotas = style_quotas(config.size, config.styles)
    pools = {spec.style: ordered_candidates(spec, root, config.seed) for spec in config.styles}
    taken = {spec.style: 0 for spec in config.styles}
    chosen: dict[str, list[PlannedTrack]] = defaultdict(list)
    retry = False
    for _ in range(SELECTION_ROUNDS):
        _hand_over_shortfalls(config.styles, quotas, pools, taken, chosen)
        batch: list[tuple[StyleSpec, Candidate, int]] = []
        for spec in config.styles:
            missing = quotas[spec.style] - len(chosen[spec.style])
            pool = pools[spec.style]
            if missing <= 0 or taken[spec.style] >= len(pool):
                continue
            per_work = min(spec.max_excerpts, max(1, -(-quotas[spec.style] // len(pool))))
            # later rounds plan with the excerpts a work actually gave (short tunes give one)
            expected = len(chosen[spec.style]) / taken[spec.style] if taken[spec.style] else per_work
            works = math.ceil(missing / max(expected, 0.5))
            works += max(1, works // 10) if retry else 0
            for candidate in pool[taken[spec.style]: taken[spec.style] + works]:
                batch.append((spec, candidate, per_work))
            taken[spec.style] = min(len(pool), taken[spec.style] + works)
        if not batch:
            break
        parsed = parse_all([candidate for _, candidate, _ in batch], config, report, progress)
        for spec, candidate, per_work in batch:
            work = parsed.get(candidate.key)
            if work is not None:
                chosen[spec.style].extend(_work_plan(candidate, work, spec, config, per_work))
        retry = True
    planned = []
    for spec in config.styles:
        planned.extend(chosen[spec.style][: quotas[spec.style]])
    return planned


def _hand_over_shortfalls(styles: Sequence[StyleSpec], quotas: dict[str, int], pools: dict[str, list],
                          taken: dict[str, int], chosen: dict[str, list]) -> None:
    """Move the quota an exhausted style cannot fill to the styles with works left, evenly and in table order."""
    open_styles = [spec.style for spec in styles if taken[spec.style] < len(pools[spec.style])]
    shortfall = 0
    for spec in styles:
        if spec.style not in open_styles and len(chosen[spec.style]) < quotas[spec.style] and taken[spec.style]:
            shortfall += quotas[spec.style] - len(chosen[spec.style])
            quotas[spec.style] = len(chosen[spec.style])
    for index in range(shortfall if open_styles else 0):
        quotas[open_styles[index % len(open_styles)]] += 1


# ---------------------------------------------------------------- labels and document text

def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].strip("-") or "untitled"


def _clean_composer(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\(.*?\)", "", name)).strip()


def _display_title(track: PlannedTrack) -> str:
    candidate, work = track.candidate, track.work
    stem = Path(candidate.key.split("#")[0]).with_suffix("")
    if candidate.style == "bach_chorale" or work.title.endswith((".mxl", ".krn", ".xml")):
        if stem.parts[0] == "bach":
            return _chorale_title(stem.name)
        return f"{track.candidate.composer or 'Unknown'}: {_title_from_path(stem)}"
    return re.sub(r"\s+", " ", work.title).strip()


def _title_from_path(stem: Path) -> str:
    """A readable title from a corpus path: 'beethoven/opus18no1/movement1' -> 'String quartet op. 18 no. 1,
    movement 1', 'monteverdi/madrigal.3.14' -> 'Madrigal 3.14'."""
    name = ", ".join(stem.parts[1:])
    name = re.sub(r"opus(\d+)", r"op. \1", name)
    name = re.sub(r"no(\d+)", r" no. \1", name)
    name = re.sub(r"\bk(\d+)", r"K. \1", name)
    name = re.sub(r"movement(\d+)", r"movement \1", name).replace("_", " ")
    name = re.sub(r"^madrigal\.", "Madrigal ", name)
    return f"String quartet {name}" if stem.parts[0] in ("haydn", "mozart", "beethoven") else name


def _chorale_title(stem: str) -> str:
    bwv = stem.replace("bwv", "")
    title = chorale_title(f"bach/{stem}")
    return f"{title} (chorale BWV {bwv})" if title else f"Chorale BWV {bwv}"


def track_file(track: PlannedTrack) -> str:
    """The track's audio file, relative to the catalog folder: style/title-slug-<work key hash>-<excerpt>.wav."""
    return (f"{track.spec.style}/{_slug(_display_title(track))}-"
            f"{hashlib.sha1(track.candidate.key.encode()).hexdigest()[:8]}-{track.excerpt}.wav")


def track_record(track: PlannedTrack, seed: int, file: str, work_id: str) -> BuiltTrack:
    candidate, work, spec = track.candidate, track.work, track.spec
    rng = random.Random(f"{seed}:ensemble:{file}")
    ensemble = choose_ensemble(spec, rng)
    title = _display_title(track)
    if track.excerpts > 1:
        title = f"{title} (excerpt {track.excerpt + 1})"
    composer = candidate.composer if candidate.composer and candidate.composer != "traditional" else ""
    composer = composer or _clean_composer(work.composer) or candidate.composer or "anonymous"
    key_name, mode = (work.key_name, work.mode) if spec.mode_stated else refine_key(work)
    labels = {
        "style": spec.style,
        "family": spec.family,
        "collection": candidate.collection,
        "composer": composer,
        "meter": work.meter,
        "key": key_name,
        "mode": mode,
        "tempo_bpm": tempo_bpm(work.meter, track.seconds_per_q),
        "ensemble": ensemble.name,
        "instruments": ensemble.instruments,
        "region": candidate.region,
        "work_id": work_id,
    }
    if spec.family == "dance" and work.tune_type:
        labels["tune_type"] = re.sub(r"\s+", " ", work.tune_type.strip().lower()).replace("slipjig", "slip jig")
    document = [f"Title: {title}", f"Composer: {composer}", f"Collection: {candidate.collection}", *work.document]
    metadata = {
        "source": f"music21 corpus: {candidate.key}",
        "excerpt": track.excerpt,
        "excerpts": track.excerpts,
        "quarter_bpm": round(60.0 / track.seconds_per_q, 1),
        "parts": work.n_parts,
    }
    if work.origin:
        metadata["origin"] = work.origin
    if spec.family == "folk_song" and work.tune_type:
        metadata["song_type"] = work.tune_type.strip(" ]")
    return BuiltTrack(file=file, title=title, composer=composer, collection=candidate.collection,
                      document_text="\n".join(document), labels=labels, metadata=metadata)


# ---------------------------------------------------------------- rendering (parallel, one synth per worker)

_SYNTH: Synthesizer | None = None


def _init_renderer(soundfont: str) -> None:
    global _SYNTH
    _SYNTH = Synthesizer(soundfont)


def _render_one(job: RenderJob) -> tuple[str, str]:
    try:
        assert _SYNTH is not None
        audio = finish(_SYNTH.render(job), SAMPLE_RATE)
        write_wav(job.path, audio, SAMPLE_RATE)
        return job.path, ""
    except RenderError as error:
        return job.path, str(error)
    except Exception as error:  # a synthesiser error on one track must not stop the build
        return job.path, f"{type(error).__name__}: {error}"


def _job_hash(job: RenderJob, soundfont: str) -> str:
    digest = hashlib.sha1(f"{RENDER_SCHEMA}:{soundfont}:{os.path.getsize(soundfont)}:{job.duration_s}".encode())
    digest.update(json.dumps(sorted(job.programs.items())).encode())
    for array in (job.onsets_s, job.ends_s, job.pitches, job.channels, job.velocities):
        digest.update(array.astype("float64").round(6).tobytes())
    return digest.hexdigest()


def render_all(jobs: list[RenderJob], config: BuildConfig, report: BuildReport, progress: Callable) -> set[str]:
    """Render the jobs whose file is missing or stale; return the paths that failed."""
    soundfont = find_soundfont(config.soundfont, config.soundfont_fallback)
    manifest_path = Path(config.out_dir) / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    hashes = {job.path: _job_hash(job, soundfont) for job in jobs}
    todo = [job for job in jobs if not (Path(job.path).exists() and manifest.get(job.path) == hashes[job.path])]
    report.render_reused = len(jobs) - len(todo)
    failed: set[str] = set()
    if todo:
        if config.workers > 1 and len(todo) > 4:
            with _pool(config.workers, _init_renderer, (soundfont,)) as pool:
                results = list(progress(pool.imap_unordered(_render_one, todo, chunksize=4),
                                        total=len(todo), desc="render"))
        else:
            _init_renderer(soundfont)
            results = [_render_one(job) for job in progress(todo, total=len(todo), desc="render")]
        for path, error in results:
            if error:
                failed.add(path)
                manifest.pop(path, None)
                if Path(path).exists():
                    Path(path).unlink()
                report.skipped.append((Path(path).name, f"render failed: {error}"))
            else:
                manifest[path] = hashes[path]
                report.rendered += 1
    manifest = {path: value for path, value in manifest.items() if path in hashes}
    manifest_path.write_text(json.dumps(manifest, indent=0, sort_keys=True))
    return failed


# ---------------------------------------------------------------- the build

def _no_progress(items, **_):
    return items


def _tqdm_progress(items, **kwargs):
    from tqdm import tqdm

    return tqdm(items, unit="score" if kwargs.get("desc") == "parse" else "track", **kwargs)


def build_demo_catalog(config: BuildConfig) -> BuildReport:
    """Select, parse, group, render, split and write ``metadata.json``/``.csv`` under ``config.out_dir``."""
    started = time.monotonic()
    cpu_started = time.process_time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = before.ru_utime + before.ru_stime
    out_dir = Path(config.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config.out_dir = out_dir
    report = BuildReport(out_dir=out_dir)
    progress = _tqdm_progress if config.progress else _no_progress
    find_soundfont(config.soundfont, config.soundfont_fallback)  # fail early and clearly, before minutes of parsing

    planned = select_tracks(config, report, progress)
    report.timings["select_parse_s"] = time.monotonic() - started

    files = [track_file(t) for t in planned]
    work_ids = assign_work_ids(
        (file, [*t.candidate.work_keys,
                f"melody:{t.spec.family}:{t.work.melody_fingerprint}" if t.work.melody_fingerprint else ""])
        for file, t in zip(files, planned, strict=True)
    )
    records = [track_record(t, config.seed, file, work_ids[file]) for file, t in zip(files, planned, strict=True)]
    jobs = []
    for file, track, record in zip(files, planned, records, strict=True):
        rng = random.Random(f"{config.seed}:render:{file}")
        start_q = excerpt_start_q(track.work, track.excerpt, track.excerpts)
        jobs.append(render_job(str(out_dir / file), track.work, ENSEMBLES[record.labels["ensemble"]],
                               track.seconds_per_q, start_q, config.excerpt_s, rng))
    render_started = time.monotonic()
    failed = render_all(jobs, config, report, progress)
    report.timings["render_s"] = time.monotonic() - render_started
    report.tracks = [record for record in records if str(out_dir / record.file) not in failed]

    keep = {str(out_dir / record.file) for record in report.tracks}
    for stale in out_dir.rglob("*.wav"):
        if str(stale) not in keep:
            stale.unlink()
            report.removed_files += 1

    items = [SplitItem(r.file, r.labels["style"], r.labels["work_id"], tuple(r.labels["instruments"]))
             for r in report.tracks]
    held = set(heldout_styles()) & {spec.style for spec in config.styles}
    report.splits = assign_splits(items, config.seed, held)
    write_metadata(report)
    report.timings["total_s"] = time.monotonic() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report.timings["cpu_s"] = time.process_time() - cpu_started + children.ru_utime + children.ru_stime - child_cpu
    return report


def write_metadata(report: BuildReport) -> None:
    """``metadata.json`` (typed labels, what ingest reads) and ``metadata.csv``/``splits.csv`` for people."""
    rows = [
        {"path": r.file, "title": r.title, "composer": r.composer, "collection": r.collection,
         "document_text": r.document_text, "labels": r.labels, **r.metadata}
        for r in report.tracks
    ]
    (report.out_dir / METADATA_JSON).write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    label_names = sorted({name for r in report.tracks for name in r.labels})
    extra = sorted({name for r in report.tracks for name in r.metadata})
    with open(report.out_dir / METADATA_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "title", "composer", "collection", "document_text",
                         *(f"label_{n}" for n in label_names), *extra])
        for r in report.tracks:
            labels = [";".join(v) if isinstance(v := r.labels.get(n, ""), list) else v for n in label_names]
            writer.writerow([r.file, r.title, r.composer, r.collection, r.document_text, *labels,
                             *(r.metadata.get(n, "") for n in extra)])
    with open(report.out_dir / SPLITS_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", *report.splits])
        for r in report.tracks:
            writer.writerow([r.file, *(parts[r.file] for parts in report.splits.values())])


def summary_rows(report: BuildReport) -> tuple[list[tuple], list[tuple]]:
    """(style, tracks, works, train, val, test, ensembles) and (ensemble, tracks, styles) rows for the printout."""
    by_style: dict[str, list[BuiltTrack]] = defaultdict(list)
    for record in report.tracks:
        by_style[record.labels["style"]].append(record)
    default = report.splits.get("default", {})
    style_rows = []
    for style, records in by_style.items():
        parts = Counter(default.get(r.file, "") for r in records)
        style_rows.append((style, len(records), len({r.labels["work_id"] for r in records}),
                           parts["train"], parts["val"], parts["test"],
                           len({r.labels["ensemble"] for r in records})))
    ensembles: dict[str, list[str]] = defaultdict(list)
    for record in report.tracks:
        ensembles[record.labels["ensemble"]].append(record.labels["style"])
    ensemble_rows = sorted(((name, len(styles), len(set(styles))) for name, styles in ensembles.items()),
                           key=lambda row: -row[1])
    return style_rows, ensemble_rows
