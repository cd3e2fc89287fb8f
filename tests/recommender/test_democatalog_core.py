"""The demo catalog's pure parts: ABC headers, candidates and de-duplication, splits, tempo, rendering."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from recommender.democatalog.abc import split_tunes
from recommender.democatalog.build import corpus_root, style_quotas
from recommender.democatalog.candidates import normalise_title, style_candidates
from recommender.democatalog.dedup import assign_work_ids
from recommender.democatalog.instruments import ENSEMBLES, GM_PROGRAMS, PERCUSSION_CHANNEL
from recommender.democatalog.keys import refine_key
from recommender.democatalog.parse import ParsedWork
from recommender.democatalog.plan import beat_quarters, render_job, seconds_per_quarter, tempo_bpm
from recommender.democatalog.render import RenderError, finish
from recommender.democatalog.splits import SplitItem, assign_splits
from recommender.democatalog.styles import STYLE_BY_NAME, STYLES, heldout_styles

ABC_BOOK = """% a book header that belongs to no tune
X: 1
T: The First Tune
R: reel
B: "O'Neill's 7"
O: Ireland
N: "Lively" "collected by F. O'Neill"
H: learnt from a piper
M: 2/2
L: 1/8
K: D
defg abag | f2d2 d4 |

X: 2
T: Second -- Jig
T: or The Other Name
R: double jig
M: 6/8
K: Ador
ABA BAB | c3 c3 |
"""


def test_split_tunes_reads_the_header_fields_music21_drops():
    first, second = split_tunes(ABC_BOOK)
    assert (first.number, second.number) == ("1", "2")
    assert first.first("R") == "reel" and first.first("B") == "O'Neill's 7" and first.first("O") == "Ireland"
    assert first.first("N") == "Lively; collected by F. O'Neill"
    assert first.first("H") == "learnt from a piper"
    assert "defg abag" in first.body and "X: 2" not in first.text
    assert second.fields["T"] == ["Second -- Jig", "or The Other Name"]
    assert second.first("K") == "Ador"


def test_normalised_titles_match_across_collections():
    assert normalise_title("The Acacia -- Reel") == normalise_title("Acacia") == "acacia"
    assert normalise_title("Miss McLeod's Reel") == normalise_title("MISS MCLEOD'S -- REEL")
    assert normalise_title("Miss McLeod") != normalise_title("Lady McLeod")


def test_style_table_has_at_least_12_styles_with_enough_works_and_overlapping_instruments():
    root = corpus_root()
    assert len(STYLES) >= 12
    for spec in STYLES:
        works = style_candidates(spec, root)
        assert len(works) * spec.max_excerpts >= 40, spec.style
        assert "piano" in spec.ensembles, f"{spec.style}: piano is in every style"
        assert all(name in ENSEMBLES for name in spec.ensembles)
    families = defaultdict(set)
    for spec in STYLES:
        for name in spec.ensembles:
            families[name].add(spec.family)
    assert all(len(fams) >= 2 for fams in families.values()), "no ensemble belongs to one family of styles"
    assert families["piano"] == {spec.family for spec in STYLES}
    assert len(heldout_styles()) == 3


def test_exact_copies_are_dropped_before_parsing():
    root = corpus_root()
    quartets = [c.key for c in style_candidates(STYLE_BY_NAME["classical_string_quartet"], root)]
    op18 = [key for key in quartets if key.startswith("beethoven/opus18no1/movement1.")]
    assert op18 == ["beethoven/opus18no1/movement1.mxl"], "one work in two formats is one candidate"
    assert not any("k545" in key for key in quartets), "a piano sonata is not a quartet"
    reels = style_candidates(STYLE_BY_NAME["reel"], root)
    oneill_numbers = [c.key.split("#")[1] for c in reels if c.key.startswith("oneills1850/")]
    assert len(oneill_numbers) == len(set(oneill_numbers)), "O'Neill's overlapping files give each tune once"
    trecento = [c.key for c in style_candidates(STYLE_BY_NAME["trecento"], root)]
    assert not any(key.endswith("_bak.xml") for key in trecento)
    assert sum("PMFC_13_01-Kyrie-Summe-Clementissime" in key for key in trecento) == 1


def test_work_ids_join_variants_transitively():
    ids = assign_work_ids([
        ("ryan-acacia", ["copy:ryan/acacia", "title:dance:acacia"]),
        ("oneill-acacia", ["copy:oneill/12", "title:dance:acacia", "melody:dance:1,2,3"]),
        ("oneill-other-name", ["copy:oneill/99", "melody:dance:1,2,3"]),
        ("unrelated", ["copy:oneill/100", "title:dance:other"]),
        ("mass-kyrie", ["palestrina/Kyrie_04", "palestrina/mass-4"]),
        ("mass-agnus", ["palestrina/Agnus_I_04", "palestrina/mass-4"]),
    ])
    assert ids["ryan-acacia"] == ids["oneill-acacia"] == ids["oneill-other-name"]
    assert ids["unrelated"] != ids["ryan-acacia"]
    assert ids["mass-kyrie"] == ids["mass-agnus"]


def _items(seed: int = 0) -> list[SplitItem]:
    rng = random.Random(seed)
    items = []
    for style_index in range(6):
        for work in range(rng.randint(3, 40)):
            for excerpt in range(rng.randint(1, 3)):
                items.append(SplitItem(f"s{style_index}-w{work}-e{excerpt}", f"style{style_index}",
                                       f"style{style_index}-w{work}"))
    # one work shared by two styles (the same tune filed under two dance types)
    items.append(SplitItem("cross-a", "style0", "shared"))
    items.append(SplitItem("cross-b", "style5", "shared"))
    return items


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_are_stratified_grouped_and_hold_styles_out(seed):
    items = _items(seed)
    splits = assign_splits(items, seed=seed, heldout={"style5"})
    assert splits == assign_splits(items, seed=seed, heldout={"style5"}), "deterministic"
    for name, parts in splits.items():
        assert set(parts) == {item.track for item in items}
        by_work = defaultdict(set)
        for item in items:
            by_work[item.work_id].add(parts[item.track])
        assert all(len(found) == 1 for found in by_work.values()), f"{name}: a work in two parts"
    default = splits["default"]
    for style in {item.style for item in items}:
        counts = {part: sum(1 for i in items if i.style == style and default[i.track] == part)
                  for part in ("train", "val", "test")}
        assert all(counts.values()), (style, counts)
        total = sum(counts.values())
        if total >= 40:
            assert 0.55 <= counts["train"] / total <= 0.85, (style, counts)
    heldout = splits["heldout_styles"]
    assert all(heldout[i.track] == "test" for i in items if i.style == "style5")
    assert heldout["cross-a"] == "test", "a work that touches a held-out style is never trained on"
    assert any(heldout[i.track] == "train" for i in items if i.style == "style0")


def test_quotas_spread_the_size_over_the_styles():
    quotas = style_quotas(60, STYLES)
    assert sum(quotas.values()) == 60 and max(quotas.values()) - min(quotas.values()) <= 1


def _work(parts: int = 1, meter: str = "2/2", note_q: float = 0.5, notes: int = 32) -> ParsedWork:
    onsets = np.repeat(np.arange(notes) * note_q, parts).astype(float)
    pitches = np.tile(np.arange(parts) * -7 + 72, notes) + np.repeat(np.arange(notes) % 5, parts)
    return ParsedWork(
        key="synthetic", title="Synthetic", composer="", meter=meter, key_name="C major", mode="major",
        part_names=[f"p{i}" for i in range(parts)], onsets=onsets, durations=np.full(len(onsets), note_q),
        pitches=pitches.astype(np.int16), parts=np.tile(np.arange(parts), notes).astype(np.int16),
        typical_note_q=note_q, length_q=notes * note_q, melody_fingerprint="",
    )


def test_tempo_follows_the_typical_note_not_the_notation():
    reel = STYLE_BY_NAME["reel"]
    in_eighths = seconds_per_quarter(_work(meter="2/2", note_q=0.5), reel, random.Random(3))
    in_sixteenths = seconds_per_quarter(_work(meter="2/4", note_q=0.25), reel, random.Random(3))
    # the same tune notated at half the note values plays its notes at the same speed:
    # a quarter of the 16th-note version holds twice the music, so it lasts twice as long
    assert in_sixteenths == pytest.approx(in_eighths * 2)
    assert tempo_bpm("2/2", in_eighths) == tempo_bpm("2/4", in_sixteenths)
    assert 80 <= tempo_bpm("2/2", in_eighths) <= 130
    assert beat_quarters("6/8") == 1.5 and beat_quarters("3/4") == 1.0 and beat_quarters("2/2") == 2.0


def test_render_jobs_never_put_a_melodic_part_on_the_drum_channel():
    work = _work(parts=15)
    job = render_job("x.wav", work, ENSEMBLES["strings"], 0.5, 0.0, 25.0, random.Random(0))
    assert PERCUSSION_CHANNEL not in set(job.channels.tolist())
    assert PERCUSSION_CHANNEL not in job.programs
    assert len(job.programs) == 15
    assert job.onsets_s.max() < 25.0 and job.onsets_s.min() == 0.0


def test_short_pieces_loop_to_fill_the_excerpt():
    work = _work(notes=8, note_q=0.5)  # 4 quarters: 2 s at 120 bpm
    job = render_job("x.wav", work, ENSEMBLES["piano"], 0.5, 0.0, 20.0, random.Random(0))
    assert job.onsets_s.max() > 19.0
    assert len(job.onsets_s) == 80


def test_one_line_tunes_are_doubled_by_the_ensemble_in_range():
    job = render_job("x.wav", _work(), ENSEMBLES["fiddle+piano"], 0.5, 0.0, 20.0, random.Random(0))
    assert sorted(job.programs.values()) == sorted(GM_PROGRAMS[i][0] for i in ("fiddle", "piano"))


def test_a_signature_read_as_major_is_checked_against_the_relative_minor():
    # A minor (no sharps or flats, read as "C major"): A C E A, G# leading tone, ends on A
    melody = [57, 60, 64, 69, 68, 69, 64, 60, 62, 64, 65, 64, 62, 59, 56, 57]
    work = _work(notes=len(melody))
    work.pitches = np.asarray(melody, dtype=np.int16)
    work.key_name, work.mode = "C major", "major"
    assert refine_key(work) == ("A minor", "minor")
    work.pitches = np.asarray([60, 64, 67, 72, 71, 72, 67, 64, 65, 67, 69, 67, 65, 62, 59, 60], dtype=np.int16)
    assert refine_key(work) == ("C major", "major")
    work.key_name, work.mode = "D dorian", "other"
    assert refine_key(work) == ("D dorian", "other"), "a stated mode is kept"


def test_finish_normalises_loudness_and_rejects_silence():
    rate = 16_000
    tone = (0.01 * np.sin(np.linspace(0, 2 * np.pi * 440 * 20, 20 * rate))).astype(np.float32)
    out = finish(tone, rate)
    assert float(np.sqrt(np.mean(out[: -rate] ** 2))) == pytest.approx(0.1, rel=0.05)
    assert np.max(np.abs(out)) < 1.0
    with pytest.raises(RenderError, match="silent"):
        finish(np.zeros(20 * rate, dtype=np.float32), rate)
    mostly_silent = np.zeros(20 * rate, dtype=np.float32)
    mostly_silent[:rate] = tone[:rate] * 10
    with pytest.raises(RenderError, match="silent"):
        finish(mostly_silent, rate)


def test_a_slow_parse_is_capped_by_cpu_time_and_not_cached(tmp_path):
    from recommender.democatalog.build import BuildConfig, BuildReport, parse_all

    quartet = next(c for c in style_candidates(STYLE_BY_NAME["classical_string_quartet"], corpus_root())
                   if c.key == "beethoven/opus59no1/movement1.mxl")
    config = BuildConfig(size=1, cache_dir=tmp_path, workers=1, parse_timeout_s=0.05)
    report = BuildReport(out_dir=tmp_path)
    assert parse_all([quartet], config, report, lambda items, **_: items) == {}
    assert report.skipped == [(quartet.key, "parse failed: parse used more than 0.05 s of CPU time")]
    assert not list(tmp_path.rglob("*.pkl")), "a timeout is not cached: a larger cap may succeed"
