"""JSON mode of the local LLM: token masks that keep an answer in the shape ``{"descriptions": ["...", ...]}``.

Constrained decoding, as llama.cpp's server does it with a grammar, for the one schema the description
client asks for: it constrains the form, never what the strings say.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class GrammarState:
    max_items: int
    items: int = 1  # the prefix opens the first string
    chars: int = 0  # characters of the current string
    choosing: bool = False  # after a bare closing quote: another string or the end
    ending: bool = False  # the forced tokens close the object
    closed: bool = False
    forced: deque = field(default_factory=deque)


class DescriptionsGrammar:
    """Token masks that keep an answer in the shape ``{"descriptions": ["...", ...]}`` (after
    ``local_llm.JSON_PREFIX``): plain string text (no quote, backslash or control character), a string that
    starts with a letter and is ``min_chars`` long before it may close, then ``, "`` (another
    string, up to ``max_items``) or ``]}``. Separators are forced, not sampled, once the model has
    chosen between them."""

    def __init__(self, tokenizer, min_chars: int = 30, max_chars: int = 320):
        import torch

        self.min_chars, self.max_chars = min_chars, max_chars
        special = set(tokenizer.all_special_ids)
        self.texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        n = len(self.texts)
        self.plain = torch.zeros(n, dtype=torch.bool)
        self.first = torch.zeros(n, dtype=torch.bool)
        self.close_more = torch.zeros(n, dtype=torch.bool)  # '",' : another string follows
        self.close_end = torch.zeros(n, dtype=torch.bool)  # '"', '"]', '"]}'
        self.tail: dict[int, str] = {}
        for i, text in enumerate(self.texts):
            if i in special or not text:
                continue
            quote = text.find('"')
            if quote < 0:
                if _plain(text):
                    self.plain[i] = True
                    self.first[i] = text.lstrip()[:1].isalpha()
            elif _plain(text[:quote]) and text[quote + 1:] in ("", ",", "]", "]}"):
                self.tail[i] = text[quote + 1:]
                (self.close_more if self.tail[i] == "," else self.close_end)[i] = True
        self.comma = _one_token(tokenizer, ",")
        self.quote = _one_token(tokenizer, ' "')
        self.end = _one_token(tokenizer, "]}")
        self.brace = _one_token(tokenizer, "}")
        self.choice = torch.zeros(n, dtype=torch.bool)
        self.choice[[self.comma, self.end]] = True

    def start(self, max_items: int) -> GrammarState:
        return GrammarState(max_items=max(1, max_items))

    def allowed(self, state: GrammarState):
        if state.choosing:
            return self.choice
        if state.chars == 0:
            return self.first
        if state.chars < self.min_chars:
            return self.plain
        if state.chars >= self.max_chars:  # maxLength: the string must close now
            return self.close_end
        if state.items >= state.max_items:
            return self.plain | self.close_end
        return self.plain | self.close_end | self.close_more

    def advance(self, state: GrammarState, token: int, forced: bool) -> None:
        """Move the state past ``token`` and queue the separators it implies."""
        if forced:
            if not state.forced:
                state.closed = state.ending
            return
        if state.choosing:
            state.choosing = False
            if token == self.comma and state.items < state.max_items:
                self._next_string(state)
            else:
                state.closed = True  # "]}"
            return
        tail = self.tail.get(token)
        if tail is None:
            state.chars += len(self.texts[token].lstrip() if state.chars == 0 else self.texts[token])
        elif tail == ",":
            self._next_string(state)
        elif tail == "":
            if state.items < state.max_items:
                state.choosing = True
            else:
                state.forced.append(self.end)
                state.ending = True
        elif tail == "]":
            state.forced.append(self.brace)
            state.ending = True
        else:
            state.closed = True

    def _next_string(self, state: GrammarState) -> None:
        state.items += 1
        state.chars = 0
        state.forced.append(self.quote)


def _plain(text: str) -> bool:
    """Text that may stand inside a JSON string as it is: no quote, backslash or control character."""
    return '"' not in text and "\\" not in text and all(ord(c) >= 32 for c in text)


def _one_token(tokenizer, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} tokens in this vocabulary; the JSON grammar needs one")
    return ids[0]
