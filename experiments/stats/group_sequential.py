"""Group-sequential test: alpha spent over planned daily looks, boundaries by recursive numerical integration.

When the maximum sample size can be fixed before the start (from the power planner), a group-sequential
test (GST) gives more power than an always-valid test at the same false-positive rate (Spotify: "Choosing
a sequential testing framework", 2023). The z statistic at look k, with information fraction
t_k = users_k / max_users, is compared with a boundary b_k; the test rejects at the first look where
z_k >= b_k (one-sided; two-sided: |z_k| >= b_k with alpha/2 a side).

Spending (Lan and DeMets 1983): the boundaries spend a cumulative alpha(t) chosen before the start,
whatever the number and timing of the looks:
  - O'Brien-Fleming type (the default):  alpha(t) = 2 - 2 Phi( z_{1-alpha/2} / sqrt(t) )   (one-sided alpha)
  - power family (Kim and DeMets 1987):   alpha(t) = alpha t^rho; spotify-confidence uses rho = 2.
Boundaries follow from P(no earlier crossing, crossing at k) = alpha(t_k) - alpha(t_{k-1}) under the null,
with the sum of the z path as Brownian motion in t. The density of the paths that have not crossed is
carried from look to look on a grid (Armitage, McPherson and Rowe 1969), exactly as R's ldbounds
``landem`` and its port in spotify-confidence (``sequential_bound_solver.py``) do: grid step 0.05 of the
increment's standard deviation (at most 1000 intervals), trapezoid rule, paths truncated at -8 and
boundaries at 8. The two-sided boundaries are the one-sided ones at alpha/2 (the paths that cross the
lower boundary and come back are ignored, as ldbounds and spotify-confidence ignore them: < 1e-6).

Past the plan: a look whose fraction reaches 1 spends all that is left and is the last; looks after it
have nothing to spend (boundary 8). A look marked ``final`` (the experiment stopped short of its planned
size) also spends all that is left. The information times themselves stay uncapped, so the correlation
between the looks is the real one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

Z_TRUNCATE = 8.0
GRID_STEP = 0.05  # in units of the increment's standard deviation
MAX_INTERVALS = 1000
_NO_NEW_INFORMATION = 1e-5  # looks closer than this in t repeat the previous one (spotify-confidence, ldbounds)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


class Spending(StrEnum):
    OBRIEN_FLEMING = "obrien_fleming"
    POWER = "power"


def spent_alpha(t: np.ndarray | float, alpha: float, spending: Spending = Spending.OBRIEN_FLEMING,
                rho: float = 2.0) -> np.ndarray:
    """Cumulative one-sided alpha spent by information fraction t (capped at 1)."""
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    if Spending(spending) is Spending.POWER:
        return alpha * t**rho
    with np.errstate(divide="ignore"):
        return np.where(t > 0, 2 - 2 * ndtr(ndtri(1 - alpha / 2) / np.sqrt(t)), 0.0)


def _trapezoid(values: np.ndarray, step: float) -> float:
    return float(step * (values.sum() - 0.5 * (values[0] + values[-1])))


def _crossing(grid: np.ndarray, density: np.ndarray, step: float, bound: float, sd: float, shift: float) -> float:
    """P(not crossed before, crossing bound at this look) = int f(s) P(s + shift + N(0, sd^2) >= bound) ds."""
    return _trapezoid(density * ndtr((grid + shift - bound) / sd), step)


def _crossing_excess(bound: float, grid: np.ndarray, density: np.ndarray, step: float, sd: float,
                     wanted: float) -> float:
    return _crossing(grid, density, step, bound, sd, 0.0) - wanted


def _propagate(grid: np.ndarray, density: np.ndarray, step: float, new_grid: np.ndarray, sd: float,
               shift: float) -> np.ndarray:
    """Density at ``new_grid`` of the paths still inside: int f(s) phi((x - s - shift)/sd)/sd ds."""
    kernel = np.exp(-0.5 * np.square((new_grid[:, None] - grid[None, :] - shift) / sd)) * (_INV_SQRT_2PI / sd)
    weights = np.full(grid.size, step)
    weights[[0, -1]] *= 0.5
    return kernel @ (density * weights)


def _grid(lower: float, upper: float, sd: float) -> tuple[np.ndarray, float]:
    intervals = max(1, min(MAX_INTERVALS, math.ceil((upper - lower) / (GRID_STEP * sd))))
    return np.linspace(lower, upper, intervals + 1), (upper - lower) / intervals


@dataclass(frozen=True)
class Boundary:
    """One-sided boundaries on the z scale, one per look, and the alpha each look spends."""

    information: tuple[float, ...]
    alpha: float
    z: np.ndarray
    alpha_spent: np.ndarray  # cumulative


@lru_cache(maxsize=256)
def _bounds(information: tuple[float, ...], alpha: float, spending: str, rho: float, final: bool) -> Boundary:
    t = np.asarray(information, dtype=float)
    target = spent_alpha(t, alpha, Spending(spending), rho)
    done = np.flatnonzero(t >= 1.0)
    last = int(done[0]) if done.size else (t.size - 1 if final else None)
    if last is not None:
        target[last:] = alpha  # spend the rest at the last look; nothing is left after it
    z = np.empty(t.size)
    grid = density = None
    step, previous, spent = 0.0, 0.0, 0.0
    for k, tk in enumerate(t):
        wanted = max(target[k] - spent, 0.0)
        if k and tk - t[k - 1] <= _NO_NEW_INFORMATION:
            z[k] = z[k - 1]
            continue
        sd = math.sqrt(tk - previous)
        if k == 0:
            z[k] = Z_TRUNCATE if wanted <= 0 else min(Z_TRUNCATE, float(ndtri(1 - wanted)))
            crossed = float(ndtr(-z[k]))
            grid, step = _grid(-Z_TRUNCATE * sd, z[k] * sd, sd)
            density = np.exp(-0.5 * np.square(grid / sd)) * (_INV_SQRT_2PI / sd)
        else:
            top = Z_TRUNCATE * math.sqrt(tk)
            if wanted < 1e-12 or _crossing(grid, density, step, top, sd, 0.0) >= wanted:
                y = top
            else:
                y = brentq(_crossing_excess, grid[0] - 10 * sd, top, args=(grid, density, step, sd, wanted),
                           xtol=1e-10, rtol=1e-12)
            z[k] = y / math.sqrt(tk)
            crossed = _crossing(grid, density, step, y, sd, 0.0)
            new_grid, new_step = _grid(-Z_TRUNCATE * math.sqrt(tk), y, sd)
            density = _propagate(grid, density, step, new_grid, sd, 0.0)
            grid, step = new_grid, new_step
        spent += crossed
        previous = tk
    return Boundary(information, alpha, z, target)


def one_sided_bounds(information: Sequence[float], alpha: float, spending: Spending = Spending.OBRIEN_FLEMING,
                     rho: float = 2.0, final: bool = False) -> Boundary:
    """Boundaries for looks at ``information`` (fractions of the planned maximum, increasing, > 0).

    Cached: the boundaries of a design depend only on it and on the looks, not on the data.
    """
    info = tuple(round(float(x), 12) for x in information)
    if not info or info[0] <= 0 or any(b < a for a, b in zip(info, info[1:], strict=False)):
        raise ValueError("information fractions must be > 0 and non-decreasing")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    return _bounds(info, float(alpha), str(Spending(spending)), float(rho), bool(final))


def crossing_probability(bounds: Boundary, drift: float) -> float:
    """P(the z path crosses the one-sided boundaries at some look) when E[z at t = 1] = drift: the power of
    the design (the same recursion as the boundaries, with the increments' mean drift * dt)."""
    t = np.asarray(bounds.information, dtype=float)
    total, grid, density, step, previous = 0.0, None, None, 0.0, 0.0
    for k, tk in enumerate(t):
        if k and tk - t[k - 1] <= _NO_NEW_INFORMATION:
            continue
        sd, shift, y = math.sqrt(tk - previous), drift * (tk - previous), bounds.z[k] * math.sqrt(tk)
        if k == 0:
            total += float(ndtr((shift - y) / sd))
            grid, step = _grid(-Z_TRUNCATE * sd + shift, y, sd)
            density = np.exp(-0.5 * np.square((grid - shift) / sd)) * (_INV_SQRT_2PI / sd)
        else:
            total += _crossing(grid, density, step, y, sd, shift)
            new_grid, new_step = _grid(min(-Z_TRUNCATE * math.sqrt(tk) + drift * tk, y - sd), y, sd)
            density = _propagate(grid, density, step, new_grid, sd, shift)
            grid, step = new_grid, new_step
        previous = tk
    return total


def inflation_factor(looks: int, alpha: float, power: float, spending: Spending = Spending.OBRIEN_FLEMING,
                     rho: float = 2.0, sides: int = 2) -> float:
    """Max sample size of the GST with ``looks`` equally spaced looks over the fixed-horizon sample size for the
    same power: (drift_GST / drift_fixed)^2, drift solved on ``crossing_probability``."""
    one_sided = alpha / sides
    bounds = one_sided_bounds(np.arange(1, looks + 1) / looks, one_sided, spending, rho)
    fixed = float(ndtri(1 - one_sided) + ndtri(power))
    drift = brentq(lambda d: crossing_probability(bounds, d) - power, fixed, 2 * fixed + 2, xtol=1e-8)
    return (drift / fixed) ** 2


@dataclass(frozen=True)
class GroupSequentialDesign:
    """Fixed at the start: the maximum number of users (both arms) and how alpha is spent."""

    max_users: float
    alpha: float = 0.05
    spending: Spending = Spending.OBRIEN_FLEMING
    rho: float = 2.0  # power family only

    def __post_init__(self):
        if not self.max_users > 0:
            raise ValueError("max_users must be > 0")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")

    def information(self, users: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.asarray(users, dtype=float) / self.max_users

    def bounds(self, users: Sequence[float] | np.ndarray, alpha: float, final: bool = False) -> Boundary:
        return one_sided_bounds(self.information(users), alpha, self.spending, self.rho, final)


@dataclass(frozen=True)
class GroupSequentialResult:
    """A two-sided GST over the looks so far: rejected at the first look where |z| >= boundary."""

    information: np.ndarray
    z: np.ndarray
    boundary: np.ndarray  # two-sided: |z| >= boundary rejects
    crossed_at: int | None  # index of the first look that crossed
    significant: bool
    finished: bool  # all alpha spent: the planned size was reached, or the experiment stopped


def first_crossing(z: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Per row of looks (last axis): the index of the first look with z >= boundary, -1 when none."""
    hit = np.asarray(z) >= np.asarray(boundary)
    return np.where(hit.any(axis=-1), hit.argmax(axis=-1), -1)


def group_sequential_test(z: Sequence[float], users: Sequence[float], design: GroupSequentialDesign,
                          final: bool = False) -> GroupSequentialResult:
    """The two-sided GST of the z path (one entry per look, e.g. per day) at the users seen at each look.

    Looks with no users are dropped; ``final`` marks the last look as the last one (the experiment stopped).
    """
    z = np.asarray(z, dtype=float)
    users = np.asarray(users, dtype=float)
    keep = (users > 0) & np.isfinite(z)
    z, users = z[keep], users[keep]
    if z.size == 0:
        empty = np.zeros(0)
        return GroupSequentialResult(empty, empty, empty, None, False, False)
    bounds = design.bounds(users, design.alpha / 2, final=final)
    crossed = int(first_crossing(np.abs(z), bounds.z))
    finished = bool(final or bounds.information[-1] >= 1.0)
    return GroupSequentialResult(design.information(users), z, bounds.z, crossed if crossed >= 0 else None,
                                 crossed >= 0, finished)
