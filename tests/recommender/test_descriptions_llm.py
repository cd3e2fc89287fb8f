"""The LLM source against a real local server speaking the Chat Completions protocol (no client mocks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from recommender.crossmusim.descriptions import ChatCompletionsClient, LLMConfig, LLMSource, TrackInfo
from recommender.crossmusim.descriptions.llm import build_messages, parse_descriptions
from tests.recommender.descriptions_fixtures import RecordingServer, llm_routes

ENDPOINT = "/v1/chat/completions"
LABELS = {"style": "irish_dance", "tune_type": "jig", "key": "G", "mode": "major", "meter": "6/8",
          "tempo_bpm": 116, "instruments": ["fiddle", "piano"]}


@pytest.fixture
def llm_server():
    server = RecordingServer(llm_routes()).start()
    yield server
    server.stop()


def make_client(server, tmp_path, **overrides) -> ChatCompletionsClient:
    values = {"base_url": server.base_url + "/v1", "model": "test-model", "api_key": "sk-test", "timeout_s": 0.5,
              "max_retries": 1, "backoff_s": 0.05, "cache_dir": tmp_path / "llm", "concurrency": 2}
    values.update(overrides)
    return ChatCompletionsClient(LLMConfig(**values))


def track(title: str) -> TrackInfo:
    return TrackInfo(1, title, composer="Trad.", collection="O'Neill's 1001", labels=LABELS)


def test_valid_json_gives_descriptions_per_perspective_with_tokens(llm_server, tmp_path):
    client = make_client(llm_server, tmp_path)
    source = LLMSource(client)
    info = track("Good Tune")
    results = [r for _t, _u, r in source.fetch_many([(info, unit) for unit in source.units(info)])]
    assert all(r.ok for r in results)
    perspectives = {d.perspective for r in results for d in r.descriptions}
    assert perspectives == {"style", "mood", "instrumentation", "rhythm", "context"}
    assert sum(len(r.descriptions) for r in results) == 10
    rhythm = next(r for r in results if r.origin == "prompt:rhythm:v1")
    assert "6/8 rhythm" in rhythm.descriptions[0].text
    assert client.usage.prompt_tokens == 5 * 120 and client.usage.completion_tokens == 5 * 40
    # The request is OpenAI-shaped and carries the metadata and the key.
    body = llm_server.bodies[0]
    assert body["model"] == "test-model" and body["response_format"] == {"type": "json_object"}
    prompt = body["messages"][-1]["content"]
    for fact in ("Title: Good Tune", "Composer: Trad.", "Tune type: jig", "Key: G", "Meter: 6/8",
                 "Tempo (BPM): 116", "Instruments: fiddle, piano", "Collection: O'Neill's 1001"):
        assert fact in prompt
    assert llm_server.headers[0]["Authorization"] == "Bearer sk-test"


def test_cache_makes_the_second_run_send_no_request(llm_server, tmp_path):
    info = track("Good Tune")
    first = LLMSource(make_client(llm_server, tmp_path))
    texts_first = [d.text for _t, _u, r in first.fetch_many([(info, u) for u in first.units(info)])
                   for d in r.descriptions]
    sent = llm_server.count(ENDPOINT)
    assert sent == 5
    second_client = make_client(llm_server, tmp_path)
    second = LLMSource(second_client)
    results = [r for _t, _u, r in second.fetch_many([(info, u) for u in second.units(info)])]
    assert llm_server.count(ENDPOINT) == sent
    assert second_client.usage.cache_hits == 5 and second_client.usage.requests == 0
    assert [d.text for r in results for d in r.descriptions] == texts_first
    assert all(r.details["cached"] for r in results)


def test_malformed_json_is_retried_then_recorded_as_failed(llm_server, tmp_path):
    client = make_client(llm_server, tmp_path, validation_retries=1)
    source = LLMSource(client, perspectives=("mood",))
    result = source.fetch(track("Broken Tune"), "prompt:mood:v1")
    assert not result.ok and result.error == "invalid answer"
    assert "malformed JSON" in result.details["detail"]
    assert llm_server.count(ENDPOINT) == 2  # asked once more, then gave up
    assert not list((tmp_path / "llm").rglob("*.json")), "a failed answer must not be cached"


def test_429_waits_for_retry_after_then_succeeds(llm_server, tmp_path):
    client = make_client(llm_server, tmp_path, max_retries=2, backoff_s=0.01)
    source = LLMSource(client, perspectives=("style",))
    started = time.monotonic()
    result = source.fetch(track("Busy Tune"), "prompt:style:v1")
    elapsed = time.monotonic() - started
    assert result.ok, result.error
    assert llm_server.count(ENDPOINT) == 2
    assert elapsed >= 0.95  # Retry-After: 1 was honoured, not the 0.01 s backoff


def test_timeout_is_retried_then_recorded(llm_server, tmp_path):
    client = make_client(llm_server, tmp_path, timeout_s=0.3, max_retries=1)
    source = LLMSource(client, perspectives=("mood",))
    started = time.monotonic()
    result = source.fetch(track("Sleepy Tune"), "prompt:mood:v1")
    assert not result.ok and result.error == "timeout"
    assert llm_server.count(ENDPOINT) == 2
    assert time.monotonic() - started < 1.5


def test_concurrency_limit_holds(llm_server, tmp_path):
    client = make_client(llm_server, tmp_path, concurrency=2, timeout_s=5)
    source = LLMSource(client)
    infos = [TrackInfo(i, f"Slow Tune {i}", labels=LABELS) for i in range(3)]
    results = list(source.fetch_many([(info, unit) for info in infos for unit in source.units(info)]))
    assert len(results) == 15 and all(r.ok for _t, _u, r in results)
    assert llm_server.max_in_flight == 2


def test_parse_descriptions_validation():
    assert parse_descriptions('```json\n{"descriptions": ["A bright jig for fiddle and piano in G."]}\n```') == [
        "A bright jig for fiddle and piano in G."]
    assert parse_descriptions('{"description": "A slow air for solo flute, plaintive and free."}') == [
        "A slow air for solo flute, plaintive and free."]
    for bad, reason in (("no json here", "no JSON"), ('{"descriptions": []}', "no 'descriptions'"),
                        ('{"descriptions": ["too short"]}', "no description of"), ("{broken", "malformed")):
        with pytest.raises(ValueError, match=reason):
            parse_descriptions(bad)


def test_config_from_the_callers_values_and_prompt_context():
    assert LLMConfig.from_mapping({}) is None
    assert LLMConfig.from_mapping({"LLM_BASE_URL": "  "}) is None
    config = LLMConfig.from_mapping({"LLM_BASE_URL": "http://localhost:11434/v1", "LLM_MODEL": "llama3.2",
                                     "LLM_API_KEY": "k", "LLM_CONCURRENCY": "3"})
    assert config.endpoint == "http://localhost:11434/v1/chat/completions"
    assert (config.model, config.api_key, config.concurrency) == ("llama3.2", "k", 3)
    assert config.json_mode and config.cache_dir is None and config.timeout_s == 60.0
    # Typed values (the platform's settings) and text (an environment) mean the same.
    typed = LLMConfig.from_mapping({"LLM_BASE_URL": "http://x/v1", "LLM_MODEL": "", "LLM_JSON_MODE": False,
                                    "LLM_TIMEOUT": 2.5, "LLM_CACHE_DIR": Path("/tmp/llm")})
    text = LLMConfig.from_mapping({"LLM_BASE_URL": "http://x/v1", "LLM_JSON_MODE": "No", "LLM_TIMEOUT": "2.5",
                                   "LLM_CACHE_DIR": "/tmp/llm"})
    assert typed == text and typed.model == "gpt-4o-mini" and not typed.json_mode
    messages = build_messages(track("Good Tune"), "mood", sourced_text=["N: A popular session jig."])
    assert "A popular session jig." in messages[-1]["content"]


def test_server_without_json_mode_is_asked_again_without_it(llm_server, tmp_path):
    client = make_client(llm_server, tmp_path)
    source = LLMSource(client, perspectives=("mood", "rhythm"))
    info = track("Strict Tune")
    results = [r for _t, _u, r in source.fetch_many([(info, u) for u in source.units(info)])]
    assert all(r.ok for r in results) and client.json_mode_rejected
    assert [("response_format" in b) for b in llm_server.bodies].count(True) <= 2
    assert "response_format" not in llm_server.bodies[-1]
    # The cache key is the logical request: a fresh client finds both answers without a request.
    sent = llm_server.count(ENDPOINT)
    again = LLMSource(make_client(llm_server, tmp_path), perspectives=("mood", "rhythm"))
    assert all(r.ok for _t, _u, r in again.fetch_many([(info, u) for u in again.units(info)]))
    assert llm_server.count(ENDPOINT) == sent
