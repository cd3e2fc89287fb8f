"""How the dashboard writes numbers; the browser test reads them back with the same rules."""

from __future__ import annotations

import math


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def count(x) -> str:
    return "—" if _missing(x) else f"{int(x):,}"


def ctr(x) -> str:
    """A rate in percent with two decimals: 0.10234 -> '10.23%'."""
    return "—" if _missing(x) else f"{x * 100:.2f}%"


def lift(x) -> str:
    """A signed relative change with one decimal: 0.061 -> '+6.1%'."""
    return "—" if _missing(x) else f"{x * 100:+.1f}%"


def points(x) -> str:
    """A signed difference of rates in percentage points: 0.0023 -> '+0.23 pp'."""
    return "—" if _missing(x) else f"{x * 100:+.2f} pp"


def interval(lower, upper, fmt=lift) -> str:
    return "—" if _missing(lower) or _missing(upper) else f"{fmt(lower)} to {fmt(upper)}"


def p_value(x) -> str:
    if _missing(x):
        return "—"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def probability(x) -> str:
    return "—" if _missing(x) else f"{x * 100:.1f}%"
