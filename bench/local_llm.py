"""Throughput of the shipped local LLM (SmolLM2-135M via transformers) by batch size and thread count.

    .venv/bin/python bench/local_llm.py [--batches 1 8 32] [--threads 1 2] [--prompts 32] [--server]

For each (threads, max batch) it answers the same ``--prompts`` description prompts (the paper's
prompts, built by ``llm.build_messages`` for a few demo-like tracks, JSON mode) and prints prompt
tokens/s, completion tokens/s, prompts/s and the share of answers the client's validator accepts.
``--server`` also runs them through the OpenAI-compatible server and the platform's client
(cache off), concurrency = max batch: what a sourcing run sees. Prints the load average beside
each figure: on a shared machine the figures swing with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from recommender.crossmusim.descriptions import ChatCompletionsClient, LLMConfig, LLMSource, Perspective  # noqa: E402
from recommender.crossmusim.descriptions.llm import build_messages, parse_descriptions  # noqa: E402
from recommender.crossmusim.descriptions.local_llm import (  # noqa: E402
    GenerationRequest,
    LocalChatModel,
    LocalModelConfig,
)
from recommender.crossmusim.descriptions.types import TrackInfo  # noqa: E402

TRACKS = [
    TrackInfo(1, "The Maple Leaf", composer="Trad.", collection="O'Neill's Music of Ireland",
              labels={"style": "irish_reel", "tune_type": "reel", "key": "G", "mode": "major", "meter": "4/4",
                      "tempo_bpm": 112, "instruments": ["fiddle", "piano"], "region": "Ireland"}),
    TrackInfo(2, "Christ lag in Todesbanden", composer="J. S. Bach",
              labels={"style": "bach_chorale", "key": "E", "mode": "minor", "meter": "4/4", "tempo_bpm": 70,
                      "instruments": ["organ"]}),
    TrackInfo(3, "Kyrie", composer="Palestrina", labels={"style": "palestrina_mass", "key": "F", "mode": "major",
                                                        "meter": "4/2", "tempo_bpm": 60, "instruments": ["choir"]}),
    TrackInfo(4, "String Quartet in G, K. 387: Menuetto", composer="Mozart",
              labels={"style": "classical_quartet", "key": "G", "mode": "major", "meter": "3/4", "tempo_bpm": 120,
                      "instruments": ["violin", "viola", "cello"]}),
]


def prompts(n: int, count: int) -> list[list[dict]]:
    every = [build_messages(track, perspective, count=count) for track in TRACKS for perspective in Perspective.ALL]
    return (every * (n // len(every) + 1))[:n]


def load_line() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f}"


def run_model(model: LocalChatModel, messages: list[list[dict]], count: int) -> dict:
    requests = [GenerationRequest(m, max_tokens=160, json_mode=True, max_items=count, repetition_penalty=1.1)
                for m in messages]
    before = model.prefilled_tokens
    started = time.perf_counter()
    results = model.generate(requests)
    seconds = time.perf_counter() - started
    valid = 0
    for result in results:
        try:
            parse_descriptions(result.text)
            valid += 1
        except ValueError:
            pass
    completion = sum(r.completion_tokens for r in results)
    return {"seconds": seconds, "prompts_s": len(results) / seconds, "completion_tok_s": completion / seconds,
            "prefill_tok_s": (model.prefilled_tokens - before) / seconds, "valid": valid, "n": len(results),
            "completion_tokens": completion}


def run_server(model: LocalChatModel, n: int, count: int) -> dict:
    from recommender.crossmusim.descriptions.local_server import LocalLLMServer

    server = LocalLLMServer(model).start()
    try:
        with tempfile.TemporaryDirectory() as cache:
            client = ChatCompletionsClient(LLMConfig(base_url=server.base_url, model=model.name, timeout_s=900,
                                                     concurrency=model.config.max_batch, cache_dir=Path(cache),
                                                     descriptions_per_prompt=count))
            source = LLMSource(client)
            work = [(t, u) for t in TRACKS for u in source.units(t)]
            work = (work * (n // len(work) + 1))[:n]
            started = time.perf_counter()
            results = [r for _t, _u, r in source.fetch_many(work)]
            seconds = time.perf_counter() - started
            client.close()
    finally:
        server.stop()
    return {"seconds": seconds, "prompts_s": len(results) / seconds, "ok": sum(r.ok for r in results),
            "n": len(results), "requests": client.usage.requests,
            "completion_tok_s": client.usage.completion_tokens / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--count", type=int, default=1, help="descriptions per prompt")
    parser.add_argument("--server", action="store_true", help="also through the HTTP server and the client")
    parser.add_argument("--cache-dir", default=str(ROOT / "var" / "cache" / "llm-model"))
    args = parser.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {args.prompts} prompts, {args.count} description(s) each; "
          f"{load_line()}")
    print("| threads | max batch | prompts/s | prefill tok/s | completion tok/s | valid JSON | load avg |")
    print("|---|---|---|---|---|---|---|")
    model = None
    for threads in args.threads:
        for batch in args.batches:
            config = LocalModelConfig(threads=threads, max_batch=batch, cache_dir=Path(args.cache_dir))
            if model is None:
                model = LocalChatModel(config)
                print(f"(model loaded in {model.load_seconds:.1f} s)", flush=True)
            else:
                import torch

                torch.set_num_threads(threads)
                model.config = config
            figures = run_model(model, prompts(args.prompts, args.count), args.count)
            print(f"| {threads} | {batch} | {figures['prompts_s']:.2f} | {figures['prefill_tok_s']:.0f} | "
                  f"{figures['completion_tok_s']:.0f} | {figures['valid']}/{figures['n']} | {load_line()} |",
                  flush=True)
            if args.server:
                via = run_server(model, args.prompts, args.count)
                print(f"|   via server + client | {batch} | {via['prompts_s']:.2f} | | {via['completion_tok_s']:.0f} | "
                      f"{via['ok']}/{via['n']} ok | {load_line()} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
