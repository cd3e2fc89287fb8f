"""The tiny demo catalog end to end: build, ingest, labels, splits, audio, re-run, a bad score, the command."""

from __future__ import annotations

from collections import Counter, defaultdict
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.management import call_command

from recommender.democatalog import BuildConfig, build_demo_catalog
from recommender.democatalog.instruments import families_of
from recommender.democatalog.splits import HELDOUT_INSTRUMENT_FAMILIES, VALIDATION_INSTRUMENT_FAMILIES
from recommender.democatalog.styles import STYLES, SourceSpec, StyleSpec, heldout_styles
from recommender.models import DatasetSplit, Track
from recommender.services.democatalog import load_demo_build
from tests.recommender.democatalog_fixtures import TINY_SEED, TINY_SIZE, load_tiny_demo_catalog, tiny_demo_dir

LABELS = {"style", "collection", "composer", "meter", "key", "mode", "tempo_bpm", "ensemble", "instruments",
          "region", "work_id"}


def _parts(name: str) -> dict[int, str]:
    return dict(DatasetSplit.objects.filter(name=name).values_list("track_id", "part"))


def test_tiny_catalog_covers_every_style_with_labels(tiny_demo_catalog):
    tracks = list(Track.objects.all())
    assert len(tracks) == len(tiny_demo_catalog.tracks) >= TINY_SIZE - 2
    styles = Counter(t.labels["style"] for t in tracks)
    assert len(styles) == len(STYLES) >= 12
    assert min(styles.values()) >= 3
    for track in tracks:
        assert set(track.labels) >= LABELS, track.title
        assert track.labels["mode"] in {"major", "minor", "other"}
        assert isinstance(track.labels["tempo_bpm"], int) and 30 <= track.labels["tempo_bpm"] <= 250
        assert isinstance(track.labels["instruments"], list) and track.labels["instruments"]
        assert track.artist == track.labels["composer"] and track.album == track.labels["collection"]
        assert track.title in track.document_text
        assert track.labels["meter"] and track.labels["key"]
    dance = [t for t in tracks if t.labels["style"] in {"reel", "double_jig", "hornpipe", "strathspey", "slip_jig"}]
    assert all(t.labels.get("tune_type") for t in dance)
    assert all("\nR: " in t.document_text for t in dance), "the raw ABC R: field ships as document text"
    assert any("\nO: " in t.document_text for t in tracks if "folk_song" in t.labels["style"])
    palestrina = [t for t in tracks if t.labels["style"] == "palestrina_mass"]
    assert all("COM: Palestrina" in t.document_text for t in palestrina), "Humdrum reference records"
    assert len({t.labels["ensemble"] for t in tracks}) >= 10


def test_tiny_catalog_splits_are_stratified_grouped_and_hold_styles_out(tiny_demo_catalog):
    tracks = {t.id: t for t in Track.objects.all()}
    default, heldout = _parts("default"), _parts("heldout_styles")
    assert set(default) == set(heldout) == set(tracks)
    for parts in (default, heldout):
        work_parts = defaultdict(set)
        for track_id, part in parts.items():
            work_parts[tracks[track_id].labels["work_id"]].add(part)
        assert all(len(found) == 1 for found in work_parts.values()), "a work in two parts"
    per_style = defaultdict(Counter)
    for track_id, part in default.items():
        per_style[tracks[track_id].labels["style"]][part] += 1
    for style, counts in per_style.items():
        assert counts["train"] >= 1 and counts["val"] >= 1 and counts["test"] >= 1, (style, counts)
        assert counts["train"] >= counts["test"], (style, counts)
    held = set(heldout_styles())
    assert len(held) == 3
    for track_id, part in heldout.items():
        if tracks[track_id].labels["style"] in held:
            assert part == "test"
    trained = {tracks[i].labels["style"] for i, part in heldout.items() if part == "train"}
    assert trained == {spec.style for spec in STYLES} - held
    instruments = _parts("heldout_instruments")
    assert set(instruments) == set(tracks)
    for track_id, part in instruments.items():
        families = families_of(tracks[track_id].labels["instruments"])
        if families & set(HELDOUT_INSTRUMENT_FAMILIES):
            assert part == "test", tracks[track_id].labels["ensemble"]
        if part == "train":
            assert not families & set(VALIDATION_INSTRUMENT_FAMILIES), tracks[track_id].labels["ensemble"]


def test_tiny_catalog_audio_is_valid(tiny_demo_catalog):
    for track in Track.objects.all():
        audio, rate = soundfile.read(track.audio_path, dtype="float32")
        assert rate == 16_000 and track.sample_rate == 16_000 and audio.ndim == 1
        assert 20.0 <= len(audio) / rate <= 30.0 and 20.0 <= track.duration_s <= 30.0
        rms = float(np.sqrt(np.mean(audio**2)))
        assert 0.03 < rms < 0.2, (track.title, rms)
        assert float(np.abs(audio).max()) < 1.0
        # sound throughout, not one note and a tail
        frames = audio[: len(audio) // 1600 * 1600].reshape(-1, 1600)
        assert np.mean(np.sqrt(np.mean(frames**2, axis=1)) > 1e-3) > 0.5, track.title


def test_rerun_is_idempotent(tiny_demo_catalog):
    before_tracks = {t.id: t.checksum for t in Track.objects.all()}
    before_parts = sorted(DatasetSplit.objects.values_list("name", "track_id", "part"))
    again = load_tiny_demo_catalog()
    assert again.build.parsed == 0 and again.build.rendered == 0, "a rerun neither parses nor renders"
    assert again.ingest.created == 0 and again.ingest.updated == 0
    assert again.ingest.unchanged == len(before_tracks) and again.removed_tracks == 0
    assert {t.id: t.checksum for t in Track.objects.all()} == before_tracks
    assert sorted(DatasetSplit.objects.values_list("name", "track_id", "part")) == before_parts


GOOD_AND_BROKEN_ABC = """X: 1
T: A Good Tune
R: reel
M: 4/4
L: 1/8
K: G
GABc dedB | dedB dedB | c2ec B2dB | c2A2 A2BA | GABc dedB | dedB dedB | c2ec B2dB | A2F2 G4 |

X: 2
T: A Broken Tune Without Notes
M: 4/4
K: G
%% nothing here but a comment

X: 3
T: Another Good Tune
M: 6/8
L: 1/8
K: D
dfa afd | gbg faf | edc BAG | FAF D3 | dfa afd | gbg faf | edc BAG | FED D3 |
"""


def _book_style(tmp_path: Path) -> StyleSpec:
    scores = tmp_path / "scores"
    scores.mkdir(exist_ok=True)
    (scores / "book.abc").write_text(GOOD_AND_BROKEN_ABC)
    (scores / "broken.mxl").write_bytes(b"PK\x03\x04 this is not a MusicXML archive")
    return StyleSpec(
        style="test_style", family="test", collection="Test book", composer="traditional", region="Nowhere",
        sources=(SourceSpec((str(scores / "book.abc"),), kind="abc"), SourceSpec((str(scores / "broken.mxl"),))),
        ensembles=("piano", "fiddle"), notes_per_second=6.0,
    )


def _build_book(tmp_path: Path, size: int):
    return build_demo_catalog(BuildConfig(
        size=size, seed=1, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", workers=1,
        styles=(_book_style(tmp_path),), progress=False,
    ))


def test_a_bad_score_is_skipped_counted_and_named(tmp_path: Path, db):
    report = _build_book(tmp_path, size=4)
    named = dict(report.skipped)
    assert len(report.skipped) == 2, report.skipped
    assert any(name.endswith("broken.mxl") for name in named)
    assert any(name.endswith("book.abc#2") and "no notes" in reason for name, reason in named.items())
    assert sorted(t.title for t in report.tracks) == ["A Good Tune", "Another Good Tune"]
    loaded = load_demo_build(report)
    assert len(loaded.tracks) == 2 and loaded.ingest.failed == []
    again = _build_book(tmp_path, size=4)
    assert len(again.skipped) == 2 and again.parsed == 0, "failures are cached and still reported"


def test_a_smaller_rebuild_removes_the_tracks_it_no_longer_has(tmp_path: Path, db):
    load_demo_build(_build_book(tmp_path, size=4))
    assert Track.objects.count() == 2
    smaller = load_demo_build(_build_book(tmp_path, size=1))
    assert smaller.removed_tracks == 1 and smaller.ingest.created == 0
    assert Track.objects.count() == 1 and len(list((tmp_path / "out").rglob("*.wav"))) == 1
    assert DatasetSplit.objects.count() == len(smaller.build.splits) == 3, "one row per split for the remaining track"


def test_command_prints_tables_and_time(db):
    out = StringIO()
    call_command("build_demo_catalog", size=TINY_SIZE, seed=TINY_SEED, out=tiny_demo_dir(), stdout=out,
                 stderr=StringIO())
    text = out.getvalue()
    assert "reel" in text and "instrument ensemble" in text and "took" in text
    assert Track.objects.count() >= TINY_SIZE - 2
    assert DatasetSplit.objects.filter(name="heldout_styles").count() == Track.objects.count()


@pytest.mark.parametrize("size", [0])
def test_command_rejects_a_bad_size(db, size):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="size"):
        call_command("build_demo_catalog", size=size, stdout=StringIO())
