"""Mining with the real MiniLM encoder: rules with reasons, duplicates, relevance, the per-track cap."""

from __future__ import annotations

import pytest

from recommender.crossmusim.descriptions import Candidate, MiningConfig, Reason, TrackInfo, mine_track
from recommender.crossmusim.descriptions.mining import agreement_score, boilerplate_reason, is_lyrics_only

TRACK = TrackInfo(1, "The Kesh", composer="Trad.", collection="O'Neill's 1001",
                  labels={"style": "irish_dance", "tune_type": "jig", "meter": "6/8", "key": "G", "mode": "major",
                          "tempo_bpm": 116, "instruments": ["fiddle", "piano"], "region": "Ireland"})

GOOD = [
    "A lively Irish jig in 6/8 time in G major, with a bouncing lilt of running triplets.",
    "The fiddle carries the melody with a bright bowed tone while the piano vamps chords underneath.",
    "A cheerful, buoyant dance tune that makes a session room tap its feet.",
    "Music for a céilí dance or a lively pub session: a jig played briskly at about 116 beats per minute.",
    "The second part climbs into the high register of the fiddle before falling back to the tonic.",
    "Ornamented with rolls and cuts, the melody of this jig moves in steady quavers over a G major drone.",
    "A traditional Irish tune from the O'Neill collection, the kind of jig that opens a set.",
    "Rhythmically it is a double jig: two groups of three quavers per bar, driving and even.",
]


@pytest.fixture(scope="module")
def encode():
    from recommender.crossmusim.text_encoder import encode_texts

    return encode_texts


def verdicts_by_key(candidates, encode, **config):
    return {v.key: v for v in mine_track(TRACK, candidates, MiningConfig(**config), encode)}


def test_boilerplate_is_rejected_with_its_kind(encode):
    candidates = [
        Candidate("good", GOOD[0], "web"),
        Candidate("cookies", "We use cookies to improve your experience on our site. By clicking Accept all cookies "
                             "you consent to our cookie policy.", "web"),
        Candidate("nav", "Home | Tunes | Sessions | About us | Contact | Sign in | Subscribe to our newsletter",
                  "web"),
        Candidate("licence", "Text is available under the Creative Commons Attribution-ShareAlike License; "
                             "additional terms may apply. Copyright 2024, all rights reserved.", "web"),
    ]
    verdicts = verdicts_by_key(candidates, encode)
    assert verdicts["good"].kept
    assert verdicts["cookies"].reason == Reason.BOILERPLATE_COOKIES
    assert verdicts["nav"].reason == Reason.BOILERPLATE_NAVIGATION
    assert verdicts["licence"].reason == Reason.BOILERPLATE_LICENCE
    assert all(not verdicts[k].kept for k in ("cookies", "nav", "licence"))


def test_a_musical_paragraph_that_mentions_copyright_is_not_boilerplate():
    text = ("The tune was first printed in 1903 and the copyright 1903 edition gives it in G major; fiddlers play "
            "this jig with rolls on the long notes, a lilting 6/8 rhythm, and a bright bowed tone throughout "
            "both parts of the melody, which repeat before the dancers change figure.")
    assert boilerplate_reason(text) == ""


def test_lyrics_short_long_and_off_topic_texts_have_reasons(encode):
    lyrics = "Oh the morning dew falls\non the green hill by the water\nand I walk alone\ndown to the river"
    long_text = " ".join([GOOD[0]] * 12)
    candidates = [
        Candidate("lyrics", lyrics, "document", "lyrics"),
        Candidate("verse", "Are you going to the fair today\nparsley sage rosemary and thyme\nremember me to one "
                           "who lives there\nshe once was a true love of mine", "web"),
        Candidate("short", "Great tune!", "web"),
        Candidate("long", long_text, "web"),
        Candidate("offtopic", "The stock market fell sharply on Tuesday as investors worried about interest rates.",
                  "web"),
        Candidate("good", GOOD[1], "web"),
    ]
    verdicts = verdicts_by_key(candidates, encode)
    assert verdicts["lyrics"].reason == Reason.LYRICS
    assert verdicts["verse"].reason == Reason.LYRICS
    assert verdicts["short"].reason == Reason.TOO_SHORT
    assert verdicts["long"].reason == Reason.TOO_LONG
    assert verdicts["offtopic"].reason == Reason.NOT_MUSIC
    assert verdicts["good"].kept and verdicts["good"].reason == ""
    assert not is_lyrics_only("A slow air.\nPlayed on the fiddle.\nIn D minor.\nWith a drone.")


def test_exact_and_near_duplicates_are_removed_keeping_the_better_one(encode):
    candidates = [
        Candidate("a", "A lively Irish jig in 6/8 time in G major, played on fiddle and piano.", "web"),
        Candidate("a_again", "a lively  Irish jig in 6/8 time in G major,   played on fiddle and piano.", "llm"),
        Candidate("a_near", "A lively Irish jig in 6/8 time in G major, played on the fiddle and the piano.", "llm"),
        Candidate("other", GOOD[2], "llm"),
    ]
    verdicts = verdicts_by_key(candidates, encode)
    survivors = [k for k in ("a", "a_again", "a_near") if verdicts[k].kept]
    assert len(survivors) == 1
    dropped = [verdicts[k] for k in ("a", "a_again", "a_near") if not verdicts[k].kept]
    assert {v.reason for v in dropped} <= {Reason.DUPLICATE, Reason.NEAR_DUPLICATE}
    assert Reason.DUPLICATE in {v.reason for v in dropped}
    near = next(v for v in dropped if v.reason == Reason.NEAR_DUPLICATE)
    assert near.details["similarity"] >= 0.9 and near.details["duplicate_of"] == survivors[0]
    assert verdicts["other"].kept


def test_per_track_cap_keeps_the_best_few(encode):
    candidates = [Candidate(i, text, "llm", perspective=f"p{i}") for i, text in enumerate(GOOD)]
    verdicts = mine_track(TRACK, candidates, MiningConfig(max_per_track=3), encode)
    kept = [v for v in verdicts if v.kept]
    over = [v for v in verdicts if v.reason == Reason.OVER_CAP]
    assert len(kept) == 3 and len(over) + len(kept) + sum(v.reason == Reason.NEAR_DUPLICATE for v in verdicts) == 8
    assert min(v.score for v in kept) >= max(v.score for v in over)
    assert all(0.0 <= v.score <= 1.0 for v in verdicts)


def test_relevance_prefers_agreement_and_penalises_contradiction(encode):
    right = "A lively Irish jig in G major in 6/8 time, played on the fiddle."
    wrong = "A slow, mournful lament in D minor in 3/4 time, sung unaccompanied."
    verdicts = verdicts_by_key([Candidate("right", right), Candidate("wrong", wrong)], encode)
    assert verdicts["right"].score > verdicts["wrong"].score + 0.2
    _score, details = agreement_score(wrong, TRACK)
    assert "minor" in details["contradictions"]


def test_without_an_encoder_rules_and_exact_duplicates_still_apply():
    candidates = [Candidate(1, GOOD[0]), Candidate(2, GOOD[0].upper()), Candidate(3, "Cookie policy: accept all "
                                                                                      "cookies to continue")]
    verdicts = {v.key: v for v in mine_track(TRACK, candidates, MiningConfig())}
    assert verdicts[1].kept and verdicts[2].reason == Reason.DUPLICATE
    assert verdicts[3].reason == Reason.BOILERPLATE_COOKIES


def test_a_trained_models_audio_text_score_joins_the_relevance_score():
    candidates = [Candidate("a", GOOD[0]), Candidate("b", GOOD[1])]
    plain = {v.key: v.score for v in mine_track(TRACK, candidates, MiningConfig())}
    boosted = {v.key: v for v in mine_track(TRACK, candidates, MiningConfig(), model_scores={"b": 1.0, "a": 0.0})}
    assert boosted["b"].score > plain["b"] - 1e-9 and boosted["a"].score < plain["a"]
    assert boosted["b"].details["model"] == 1.0 and "model" in boosted["a"].details
