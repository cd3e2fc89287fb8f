"""Which strings the platform accepts from clients: printable text, nothing that breaks a record.

User ids and text queries travel into logs, COPY streams, CSV exports and HTML. Characters
that mean "end of line/record" to some reader (C0/C1 controls, U+2028/U+2029), code points
that are not characters (surrogates, U+FDD0-U+FDEF, U+xFFFE/U+xFFFF) and unassigned or
private-use code points are refused with a reason instead of being stored. Format characters
(zero-width joiners in emoji sequences, bidi marks) and every letter, mark, number, symbol,
punctuation and space of any script are accepted.
"""

from __future__ import annotations

import unicodedata

# General categories refused: controls, surrogates, line/paragraph separators, unassigned (incl. the
# noncharacters), private use.
_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cs": "a surrogate code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cn": "an unassigned code point or noncharacter",
    "Co": "a private-use code point",
}


def text_problem(text: str, name: str) -> str | None:
    """None when ``text`` is acceptable, else a reason naming the first offending character."""
    if text.isascii() and text.isprintable():  # the common case, without a per-character loop
        return None
    for index, char in enumerate(text):
        what = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if what is not None:
            return f"{name} must not contain {what} (U+{ord(char):04X} at index {index})"
    return None
