"""Description sourcing and mining figures (pure core, no database): run ``python bench/descriptions.py``.

- document + metadata sourcing and mining over the tiny demo catalog (60 tracks, built once
  under var/ by the catalog tests): candidates per track, kept per track, rejection reasons,
  MiniLM load time and mining throughput;
- the LLM client against a local Chat Completions server that answers after a fixed latency:
  throughput at several concurrency limits, and a cached re-run (no request sent).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def bench_catalog() -> None:
    from recommender.crossmusim.descriptions import (
        Candidate,
        DocumentSource,
        MetadataTemplateSource,
        MiningConfig,
        TrackInfo,
        mine_many,
        mine_track,
    )
    from recommender.crossmusim.text_encoder import encode_texts, load_text_encoder
    from tests.recommender.democatalog_fixtures import build_tiny_demo_files

    build = build_tiny_demo_files()
    infos = [TrackInfo(i, t.title, t.composer, t.collection, labels=t.labels, document_text=t.document_text,
                       metadata=t.metadata) for i, t in enumerate(build.tracks)]
    started = time.perf_counter()
    per_track = []
    for info in infos:
        candidates = []
        for source in (DocumentSource(), MetadataTemplateSource()):
            for unit in source.units(info):
                candidates += [Candidate(len(candidates), d.text, d.source, d.perspective)
                               for d in source.fetch(info, unit).descriptions]
        per_track.append(candidates)
    sourcing_s = time.perf_counter() - started
    n_candidates = sum(len(c) for c in per_track)
    started = time.perf_counter()
    load_text_encoder()
    load_s = time.perf_counter() - started
    reasons: Counter = Counter()
    kept_by_source: Counter = Counter()
    kept_per_track = []
    items = list(zip(infos, per_track, strict=True))
    started, cpu_started = time.perf_counter(), time.process_time()
    all_verdicts = []
    for start in range(0, len(items), 32):  # as the Django service does: one encoder call per 32 tracks
        all_verdicts += mine_many(items[start:start + 32], MiningConfig(), encode_texts)
    mining_s, mining_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    single_started = time.perf_counter()
    for info, candidates in items[:10]:
        mine_track(info, candidates, MiningConfig(), encode_texts)
    single_s = (time.perf_counter() - single_started) / 10
    for verdicts in all_verdicts:
        kept = [v for v in verdicts if v.kept]
        kept_per_track.append(len(kept))
        kept_by_source.update(v.details["source"] for v in kept)
        reasons.update(v.reason for v in verdicts if not v.kept)
    print(f"tiny demo catalog: {len(infos)} tracks, {n_candidates} candidates "
          f"({n_candidates / len(infos):.1f}/track), sourcing {sourcing_s * 1000:.0f} ms")
    print(f"MiniLM load {load_s:.1f} s; mining in batches of 32 tracks: {mining_s:.1f} s wall, {mining_cpu:.1f} s CPU "
          f"= {n_candidates / mining_s:.0f} candidates/s; one track per encoder call: {single_s * 1000:.0f} ms/track")
    print(f"kept per track: min {min(kept_per_track)}, mean {sum(kept_per_track) / len(kept_per_track):.1f}, "
          f"max {max(kept_per_track)}; kept by source {dict(kept_by_source)}")
    print(f"rejected by reason: {dict(reasons)}")


def bench_llm() -> None:
    from recommender.crossmusim.descriptions import ChatCompletionsClient, LLMConfig, LLMSource, TrackInfo
    from tests.recommender.descriptions_fixtures import RecordingServer, llm_routes

    server = RecordingServer(llm_routes()).start()
    infos = [TrackInfo(i, f"Slow Tune {i}", labels={"style": "reel", "meter": "4/4"}) for i in range(16)]
    try:
        for concurrency in (1, 4, 8):
            with tempfile.TemporaryDirectory() as cache:
                config = LLMConfig(base_url=server.base_url + "/v1", model="bench", cache_dir=Path(cache),
                                   concurrency=concurrency, timeout_s=10)
                client = ChatCompletionsClient(config)
                source = LLMSource(client)
                work = [(info, unit) for info in infos for unit in source.units(info)]
                started = time.perf_counter()
                results = [r for _t, _u, r in source.fetch_many(work)]
                elapsed = time.perf_counter() - started
                assert all(r.ok for r in results)
                client.close()
                rerun_client = ChatCompletionsClient(config)
                rerun = LLMSource(rerun_client)
                sent = server.total()
                started = time.perf_counter()
                list(rerun.fetch_many(work))
                cached_s = time.perf_counter() - started
                print(f"llm concurrency {concurrency}: {len(work)} prompts (200 ms server latency) in {elapsed:.2f} s "
                      f"= {len(work) / elapsed:.1f} prompts/s, peak in flight {server.max_in_flight}; cached re-run "
                      f"{cached_s * 1000:.0f} ms, {server.total() - sent} requests sent")
                server.max_in_flight = 0
                rerun_client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")
    django.setup()  # the tiny catalog builder reads settings-independent paths but imports the project
    bench_catalog()
    bench_llm()
