"""Mining rejects what contradicts the track: worked examples of each kind, and none from the track's own text."""

from __future__ import annotations

import pytest

from recommender.crossmusim.descriptions import Candidate, Reason, TrackInfo, mine_track
from recommender.crossmusim.descriptions.contradictions import find_contradictions, track_era
from recommender.crossmusim.descriptions.templates import write_template_descriptions

REEL = TrackInfo(1, "The Maple Leaf", composer="traditional",
                 collection="O'Neill's Music of Ireland (1850 melodies, 1903)",
                 labels={"style": "reel", "tune_type": "reel", "family": "dance", "key": "G major", "mode": "major",
                         "meter": "4/4", "tempo_bpm": 112, "instruments": ["fiddle", "piano"],
                         "ensemble": "fiddle+piano", "region": "Ireland"},
                 document_text="T: The Maple Leaf\nR: Reel\nB: O'Neill's 1228\nN: Collected by McNamara")
CHORALE = TrackInfo(2, "Christ lag in Todesbanden", composer="Johann Sebastian Bach",
                    collection="Bach four-part chorales",
                    labels={"style": "bach_chorale", "family": "baroque_choral", "key": "E minor", "mode": "minor",
                            "meter": "4/4", "tempo_bpm": 70, "instruments": ["organ"], "ensemble": "organ",
                            "region": "Germany"})


def kinds(text: str, track: TrackInfo) -> set[str]:
    return {kind for kind, _said, _truth in find_contradictions(text, track)}


@pytest.mark.parametrize(("text", "track", "expected"), [
    # the model's own sentence (docs/FACTS): a genre, a form and a person that are not the track's
    ("The Maple Leaf Rag is a classic American folk-rock album by Scott Joplin, released in 1948", REEL,
     {"genre", "person"}),
    ("A lively reel played on guitar and fiddle at a dance.", REEL, {"instrument"}),
    ("A reel sung by a choir in four parts.", REEL, {"instrument"}),
    ("A slow, stately reel for a quiet evening.", REEL, {"tempo"}),
    ("A reel in 6/8 time with a driving pulse.", REEL, {"tempo"}),
    ("A cheerful jig for the fiddle, danced at a ceili.", REEL, {"genre"}),
    ("A Baroque chorale recorded for a 1960s rock album.", CHORALE, {"era", "genre"}),
    ("A medieval chant in the style of the 12th century.", CHORALE, {"era"}),
    ("A fast, breakneck chorale on the organ.", CHORALE, {"tempo"}),
    ("A chorale composed by Mozart for the organ.", CHORALE, {"person"}),
    ("A chorale performed by Johnny Doe on the organ.", CHORALE, {"person"}),
])
def test_each_kind_of_contradiction_is_found(text, track, expected):
    assert kinds(text, track) == expected


@pytest.mark.parametrize(("text", "track"), [
    ("A bright reel in G major for fiddle and piano, collected by McNamara, O'Neill's 1228.", REEL),
    ("An Irish reel from O'Neill's collection of 1903, brisk at about 112 BPM in 4/4.", REEL),
    ("A Bach chorale from the 18th century, harmonised in four parts, on the organ.", CHORALE),
    ("A solemn, slow Lutheran hymn by Johann Sebastian Bach, calm and not fast.", CHORALE),
])
def test_true_statements_are_no_contradiction(text, track):
    assert find_contradictions(text, track) == []


def test_the_template_writer_never_contradicts_its_own_track():
    for track in (REEL, CHORALE):
        for description in write_template_descriptions(track):
            found = find_contradictions(description.text, track)
            assert all(kind == "instrument" and said == "choir" for kind, said, _ in found), (description.text, found)


def test_era_comes_from_the_style():
    assert track_era(CHORALE) == (1700, 1760)
    assert track_era(TrackInfo(3, "x", labels={"style": "unknown"})) is None


def test_mining_rejects_with_the_reason_and_keeps_the_finding():
    candidates = [Candidate(1, "A lively Irish reel for fiddle and piano in G major, bright and driving."),
                  Candidate(2, "A lively Irish reel for guitar and banjo, bright and driving, in G major."),
                  Candidate(3, "A bright reel in 6/8 time that the dancers love, in G major.")]
    verdicts = {v.key: v for v in mine_track(REEL, candidates)}
    assert verdicts[1].kept
    assert verdicts[2].reason == Reason.CONTRADICTION_INSTRUMENT
    assert verdicts[2].details["contradicts"][0][:2] == ["instrument", "guitar"]
    assert verdicts[3].reason == Reason.CONTRADICTION_TEMPO
