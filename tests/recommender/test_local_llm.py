"""The shipped local LLM for real: SmolLM2-135M behind the OpenAI-compatible server, the platform's client.

The model is loaded once per session (~5-20 s from the converted weights under VAR_DIR/cache/llm-model,
longer the very first time); every test sends a handful of prompts, batched by the server. Decoding
is greedy (temperature 0), so the answers barely change from run to run.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from django.conf import settings

from recommender.crossmusim.descriptions import (
    Candidate,
    ChatCompletionsClient,
    LLMConfig,
    LLMSource,
    Reason,
    TrackInfo,
    mine_track,
)
from recommender.crossmusim.descriptions.contradictions import FAMILIES, track_families
from recommender.crossmusim.descriptions.llm import MAX_WORDS, MIN_WORDS
from recommender.crossmusim.descriptions.local_llm import LocalChatModel, LocalModelConfig, shipped_gguf_path
from recommender.crossmusim.descriptions.local_server import LocalLLMServer
from recommender.crossmusim.descriptions.text import words

TRACKS = [
    TrackInfo(1, "The Maple Leaf", composer="traditional", collection="O'Neill's Music of Ireland",
              labels={"style": "reel", "tune_type": "reel", "key": "G major", "mode": "major", "meter": "4/4",
                      "tempo_bpm": 112, "instruments": ["fiddle", "piano"], "region": "Ireland"}),
    TrackInfo(2, "Christ lag in Todesbanden", composer="Johann Sebastian Bach", collection="Bach four-part chorales",
              labels={"style": "bach_chorale", "key": "E minor", "mode": "minor", "meter": "4/4", "tempo_bpm": 70,
                      "instruments": ["organ"], "region": "Germany"}),
    TrackInfo(3, "Kyrie", composer="Giovanni Pierluigi da Palestrina", collection="Palestrina masses",
              labels={"style": "palestrina_mass", "key": "F major", "mode": "major", "meter": "4/2",
                      "tempo_bpm": 60, "instruments": ["choir"], "region": "Italy"}),
]


@pytest.fixture(scope="session")
def local_llm():
    model = LocalChatModel(LocalModelConfig(threads=1, max_batch=8,
                                            cache_dir=Path(settings.VAR_DIR) / "cache" / "llm-model"))
    server = LocalLLMServer(model).start()
    yield server
    server.stop()


def client(server, cache_dir, **overrides) -> ChatCompletionsClient:
    values = {"base_url": server.base_url, "model": server.model.name, "timeout_s": 600, "concurrency": 8,
              "temperature": 0.0, "cache_dir": cache_dir, "descriptions_per_prompt": 2, "max_tokens": 160}
    values.update(overrides)
    return ChatCompletionsClient(LLMConfig(**values))


def source_all(source: LLMSource, tracks=TRACKS):
    return [result for _track, _unit, result in source.fetch_many([(t, u) for t in tracks for u in source.units(t)])]


def test_the_model_ships_in_the_wheel():
    path = shipped_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90_000_000


def test_real_answers_validate_as_json_with_tokens_counted(local_llm, tmp_path):
    llm = client(local_llm, tmp_path / "cache", descriptions_per_prompt=1)
    results = source_all(LLMSource(llm, perspectives=("style",)))
    ok = [r for r in results if r.ok]
    assert len(ok) >= len(results) - 1, [r.error for r in results]
    for result in ok:
        assert result.details["model"] == "SmolLM2-135M-Instruct-Q4_1"
        for description in result.descriptions:
            assert MIN_WORDS <= len(words(description.text)) <= MAX_WORDS
    for result in results:
        assert result.ok or result.error == "invalid answer"  # a bad answer is recorded, never stored as text
    assert llm.usage.requests >= len(results) and llm.usage.completion_tokens > 0
    assert llm.usage.prompt_tokens > 100 * len(results)  # the paper's prompt: metadata and the ask


def test_a_rerun_is_answered_from_the_cache(local_llm, tmp_path):
    first = client(local_llm, tmp_path / "cache", descriptions_per_prompt=1)
    texts = [d.text for r in source_all(LLMSource(first, perspectives=("mood",))) for d in r.descriptions]
    served = local_llm.served
    second = client(local_llm, tmp_path / "cache", descriptions_per_prompt=1)
    again = source_all(LLMSource(second, perspectives=("mood",)))
    assert local_llm.served == served and second.usage.requests == 0
    assert second.usage.cache_hits == sum(1 for r in again if r.ok) > 0
    assert [d.text for r in again for d in r.descriptions] == texts


def test_mining_rejects_what_the_model_gets_wrong(local_llm, tmp_path):
    """Real hallucinations: SmolLM2 gives a fiddle reel a guitar, a chorale another century, and so on.
    Every contradiction verdict must name a finding the track's labels really contradict."""
    llm = client(local_llm, tmp_path / "cache")
    source = LLMSource(llm, perspectives=("style", "instrumentation", "context"))
    by_track: dict[int, list] = {}
    for track, _unit, result in source.fetch_many([(t, u) for t in TRACKS for u in source.units(t)]):
        by_track.setdefault(track.track_id, []).extend(result.descriptions)
    verdicts = []
    for track in TRACKS:
        candidates = [Candidate(i, d.text, "llm", d.perspective) for i, d in enumerate(by_track[track.track_id])]
        verdicts += [(track, v) for v in mine_track(track, candidates)]
    rejected = [(t, v) for t, v in verdicts if v.reason in Reason.CONTRADICTIONS]
    assert rejected, [v.text for _t, v in verdicts]
    for track, verdict in rejected:
        kind, said, _truth = verdict.details["contradicts"][0]
        assert said.lower() in verdict.text.lower() or kind in ("era", "tempo")
        if kind == "instrument":
            family = next(f for f, names in FAMILIES.items() if said in names)
            assert family not in track_families(track)
        if kind == "person":
            assert said.split()[0] not in track.composer.lower()


def test_a_malformed_request_gets_a_400_with_the_reason(local_llm):
    answer = httpx.post(local_llm.base_url + "/chat/completions", json={"messages": "hello"}, timeout=10)
    assert answer.status_code == 400 and "messages" in answer.json()["error"]["message"]
    answer = httpx.post(local_llm.base_url + "/chat/completions",
                        json={"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "xml"}},
                        timeout=10)
    assert answer.status_code == 400 and "response_format" in answer.json()["error"]["message"]
    models = httpx.get(local_llm.base_url + "/models", timeout=10).json()
    assert models["data"][0]["id"] == "SmolLM2-135M-Instruct-Q4_1"
