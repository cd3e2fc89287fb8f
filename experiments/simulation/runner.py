"""Drive a population of simulated users against the platform at a paced request rate.

Threads share one pooled HTTP client. A global pacer spaces recommendation requests to the
target rate (no catch-up bursts when the server is slow); the run stops when every session is
played, when ``duration_s`` is up, or after ``max_requests`` recommendation requests. Clicks,
and the plays that follow them, are buffered and posted in batches (``POST /api/v1/events``) by
size or every ``event_flush_s``, one batch at a time and in order, so a play never reaches the
platform before its click.

Determinism: the users, their tastes, sessions, seeds, click decisions and listens are drawn
from generators keyed by ``(seed, user, session)``; the schedule of sessions is a seeded shuffle.
Given the same recommendations, a rerun with the same seed makes the same requests and clicks
(thread timing only changes their interleaving). Event ids are not drawn from the seed: they
derive from the server's request id (see :func:`click_events`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np

from .catalog import Catalog
from .client import ApiError, PlatformClient, Recommendation
from .taste import (
    TasteModel,
    UserProfile,
    choose_clicks,
    choose_listens,
    draw_seed_track,
    listen_rng,
    make_population,
    rng_for,
    session_rng,
)

_SCHEDULE_STREAM = 2
_PLACEMENT_STREAM = 3

DROP_AFTER_FIRST_REQUEST = "after_first_request"
DROP_BEFORE_FIRST_REQUEST = "before_first_request"


@dataclass(frozen=True)
class DropPolicy:
    """Users of ``arm`` vanish with probability ``fraction`` (the SRM proof's broken arm).

    ``after_first_request``: the user makes one request, sees the arm, and never clicks or comes
    back (an arm that crashes the app). ``before_first_request``: the user is lost before the
    platform ever logs them (a broken redirect in one arm); the arm must then be known before
    asking, so this needs ``arm_of(user_id)`` from the caller. A user's fate is a fixed uniform
    draw (``UserProfile.drop_draw``), so the same users vanish on every run with the same seed.
    """

    arm: str | None = None
    fraction: float = 0.0
    when: str = DROP_AFTER_FIRST_REQUEST
    arm_of: Callable[[str], str | None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"drop fraction must lie in [0, 1], got {self.fraction}")
        if self.when not in (DROP_AFTER_FIRST_REQUEST, DROP_BEFORE_FIRST_REQUEST):
            raise ValueError(f"unknown drop moment {self.when!r}")
        if self.when == DROP_BEFORE_FIRST_REQUEST and self.arm and self.arm_of is None:
            raise ValueError("dropping before the first request needs arm_of(user_id) to know the arm in advance")

    @property
    def active(self) -> bool:
        return bool(self.arm) and self.fraction > 0

    def vanishes(self, user: UserProfile, variant: str | None) -> bool:
        """True when ``user``, assigned to ``variant``, is one of the dropped users."""
        return self.active and variant is not None and str(variant) == str(self.arm) and user.drop_draw < self.fraction

    def vanishes_before_first_request(self, user: UserProfile) -> bool:
        if not self.active or self.when != DROP_BEFORE_FIRST_REQUEST:
            return False
        return self.vanishes(user, self.arm_of(user.user_id))

    def vanishes_after_first_request(self, user: UserProfile, variant: str | None) -> bool:
        return self.when == DROP_AFTER_FIRST_REQUEST and self.vanishes(user, variant)


@dataclass(frozen=True)
class SimulationConfig:
    users: int
    rate: float  # recommendation requests per second (event batches come on top)
    duration_s: float
    max_requests: int | None = None
    seed: int = 0
    k: int = 10
    workers: int = 16
    event_batch_size: int = 200
    event_flush_s: float = 1.0
    user_prefix: str = "sim"
    drop: DropPolicy = field(default_factory=DropPolicy)
    taste: TasteModel = field(default_factory=TasteModel)
    # (placement, weight) pairs: each session plays on one placement drawn by weight. One placement: the
    # requests name none (the platform's default, track_page).
    placements: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if any(weight <= 0 for _, weight in self.placements):
            raise ValueError("placement weights must be positive")
        if self.users < 1:
            raise ValueError("need at least one user")
        if self.rate <= 0 or self.duration_s <= 0:
            raise ValueError("rate and duration must be positive")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        if not 1 <= self.k <= 100:
            raise ValueError("k must lie in 1..100")
        if self.workers < 1 or self.event_batch_size < 1:
            raise ValueError("workers and event_batch_size must be >= 1")


@dataclass
class VariantCounts:
    users: int = 0
    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    vanished: int = 0
    plays: int = 0
    long_listens: int = 0  # plays of >= 30 s
    listened_seconds: float = 0.0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def skip_rate(self) -> float:
        return 1.0 - self.long_listens / self.plays if self.plays else 0.0


@dataclass
class SimulationSummary:
    """What a run did, as the player side saw it (the platform's own counts come from its API)."""

    seed: int
    users: int
    elapsed_s: float = 0.0
    stop_reason: str = ""
    requests: int = 0  # recommendation requests answered
    request_errors: int = 0
    impressions: int = 0
    clicks: int = 0  # clicks decided and handed to the event batcher
    plays: int = 0  # plays (one per click) handed to the event batcher
    long_listens: int = 0
    listened_seconds: float = 0.0
    event_posts: int = 0
    event_post_errors: int = 0
    events_accepted: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0
    events_unsent: int = 0  # clicks and plays in batches that failed for good
    retries: int = 0
    users_active: int = 0  # users who got at least one answer
    users_vanished: int = 0
    catalog_tracks: int = 0
    errors: Counter = field(default_factory=Counter)
    rejected_reasons: Counter = field(default_factory=Counter)
    variants: dict[str, VariantCounts] = field(default_factory=dict)
    # "<experiment id>/<variant>" (or "none"), per placement played: where experiments run side by side, the
    # variant keys alone mix them up.
    arms: dict[str, VariantCounts] = field(default_factory=dict)
    placements: Counter = field(default_factory=Counter)  # requests per placement
    arm_models: dict[str, set] = field(default_factory=dict)  # arms' key -> the models that served them
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def achieved_rate(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies_ms:
            return {}
        values = np.percentile(np.asarray(self.latencies_ms), [50, 95, 99])
        return {"p50": float(values[0]), "p95": float(values[1]), "p99": float(values[2])}

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("latencies_ms")
        data["errors"] = dict(self.errors)
        data["rejected_reasons"] = dict(self.rejected_reasons)
        data["variants"] = {key: {**asdict(counts), "ctr": counts.ctr, "skip_rate": counts.skip_rate}
                            for key, counts in self.variants.items()}
        data["arms"] = {key: {**asdict(counts), "ctr": counts.ctr} for key, counts in self.arms.items()}
        data["placements"] = dict(self.placements)
        data["arm_models"] = {key: sorted(map(str, models)) for key, models in self.arm_models.items()}
        data["achieved_rate"] = self.achieved_rate
        data["latency_ms"] = self.latency_percentiles()
        return data

    def format(self) -> str:
        lines = [
            f"simulation seed={self.seed} users={self.users} catalog={self.catalog_tracks} tracks: "
            f"stopped by {self.stop_reason} after {self.elapsed_s:.1f} s",
            f"  recommendation requests {self.requests} ({self.achieved_rate:.1f}/s), errors {self.request_errors}, "
            f"retries {self.retries}",
            f"  impressions {self.impressions}, clicks {self.clicks} "
            f"(CTR {self.clicks / self.impressions if self.impressions else 0:.4f}), plays {self.plays} "
            f"(long listens {self.long_listens}, {self.listened_seconds / max(self.plays, 1):.1f} s per play)",
            f"  event batches {self.event_posts} (errors {self.event_post_errors}): accepted {self.events_accepted}, "
            f"duplicates {self.events_duplicate}, rejected {self.events_rejected}, unsent {self.events_unsent}",
            f"  users active {self.users_active}, vanished {self.users_vanished}",
        ]
        latency = self.latency_percentiles()
        if latency:
            lines.append("  latency ms " + ", ".join(f"{name} {value:.1f}" for name, value in latency.items()))
        for key in sorted(self.variants):
            counts = self.variants[key]
            lines.append(
                f"  variant {key}: users {counts.users}, requests {counts.requests}, impressions {counts.impressions},"
                f" clicks {counts.clicks}, CTR {counts.ctr:.4f}, plays {counts.plays}, skip rate "
                f"{counts.skip_rate:.3f}, vanished {counts.vanished}"
            )
        if len(self.placements) > 1:
            lines.append("  placements: " + ", ".join(f"{p} {n} requests" for p, n in sorted(self.placements.items())))
        if self.errors:
            lines.append("  errors: " + ", ".join(f"{kind} x{n}" for kind, n in self.errors.most_common()))
        if self.rejected_reasons:
            lines.append("  rejected: " + ", ".join(f"{why} x{n}" for why, n in self.rejected_reasons.most_common(5)))
        return "\n".join(lines)


def draw_placement(placements: tuple[tuple[str, float], ...], seed: int, user: UserProfile,
                   session: int) -> str | None:
    """The session's placement, by weight, from its own stream (the session's clicks draw the same as before)."""
    if len(placements) < 2:
        return placements[0][0] if placements else None
    weights = np.array([weight for _, weight in placements], dtype=float)
    index = rng_for(seed, _PLACEMENT_STREAM, user.index, session).choice(len(placements), p=weights / weights.sum())
    return placements[int(index)][0]


CLICK_ID_NAMESPACE = uuid.UUID("5d0f6c1e-3b8a-4f57-9a51-2c7e0b9d4e10")


def click_events(rec: Recommendation, positions: list[int]) -> list[dict]:
    """The click events for the clicked ``positions`` of one answer.

    The event id is a UUIDv5 of (request id, position): unique across runs and seeds (the
    request id is the server's), one click per shown item at most, and fixed once made, so a
    retried batch carries the same ids and is counted once. (Ids drawn from the seeded
    generator would repeat when a later run reuses the seed, and the platform would drop
    those clicks as duplicates.)
    """
    by_position = {item.position: item for item in rec.items}
    now = datetime.now(UTC).isoformat()
    return [
        {
            "event_id": str(uuid.uuid5(CLICK_ID_NAMESPACE, f"{rec.request_id}:{position}")),
            "type": "click",
            "request_id": rec.request_id,
            "track": by_position[position].track,
            "position": position,
            "client_time": now,
        }
        for position in positions
    ]


def play_events(rec: Recommendation, positions: list[int], seconds: list[float],
                long_listen_s: float = 30.0) -> list[dict]:
    """The play events that follow the clicks on ``positions`` of one answer, ``seconds`` listened to each.

    Event ids derive from (request id, position) like the clicks' (one play per clicked item), so a retried
    batch is counted once. A listen shorter than ``long_listen_s`` ended in a skip."""
    by_position = {item.position: item for item in rec.items}
    now = datetime.now(UTC).isoformat()
    return [
        {
            "event_id": str(uuid.uuid5(CLICK_ID_NAMESPACE, f"play:{rec.request_id}:{position}")),
            "type": "play",
            "request_id": rec.request_id,
            "track": by_position[position].track,
            "position": position,
            "listened_seconds": listened,
            "skipped": listened < long_listen_s,
            "client_time": now,
        }
        for position, listened in zip(positions, seconds, strict=True)
    ]


class Pacer:
    """Hands out send times ``1 / rate`` apart; a late caller sends now (no catch-up burst)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, deadline: float) -> bool:
        """Sleep until this caller's slot; False when the slot falls after ``deadline``."""
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self.interval
        if slot >= deadline:
            return False
        if slot > now:
            time.sleep(slot - now)
        return True


def session_schedule(users: list[UserProfile], seed: int) -> list[tuple[int, int]]:
    """Every (user index, session number) in a seeded random order; a user's sessions keep their order."""
    slots = np.repeat(np.arange(len(users)), [user.sessions for user in users])
    rng_for(seed, _SCHEDULE_STREAM).shuffle(slots)
    played: Counter = Counter()
    schedule = []
    for index in slots.tolist():
        schedule.append((index, played[index]))
        played[index] += 1
    return schedule


class _EventBatcher:
    """Buffers events; posts a batch when full, every ``flush_s`` from a thread, and at the end.

    One post at a time, batches in the order their events were added: a play that lands in the batch after its
    click's is still posted after it (the platform rejects a play whose click it has not seen)."""

    def __init__(self, client: PlatformClient, summary: SimulationSummary, lock: threading.Lock,
                 batch_size: int, flush_s: float) -> None:
        self.client, self.summary, self.lock = client, summary, lock
        self.batch_size, self.flush_s = batch_size, flush_s
        self._pending: list[dict] = []
        self._pending_lock = threading.Lock()
        self._post_lock = threading.Lock()  # taken before _pending_lock: a batch is taken and posted under it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush_periodically, name="event-flush", daemon=True)
        self._thread.start()

    def add(self, events: list[dict]) -> None:
        with self._pending_lock:
            self._pending.extend(events)
            full = len(self._pending) >= self.batch_size
        if full:
            with self._post_lock:
                with self._pending_lock:
                    batch = self._take() if len(self._pending) >= self.batch_size else None
                if batch:
                    self._post(batch)

    def _take(self) -> list[dict]:
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        return batch

    def flush(self) -> None:
        while True:
            with self._post_lock:
                with self._pending_lock:
                    batch = self._take()
                if not batch:
                    return
                self._post(batch)

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()

    def _post(self, batch: list[dict]) -> None:
        try:
            result = self.client.post_events(batch)
        except ApiError as exc:
            with self.lock:
                self.summary.event_posts += 1
                self.summary.event_post_errors += 1
                self.summary.events_unsent += len(batch)
                self.summary.errors[f"events_{exc.kind}"] += 1
            return
        with self.lock:
            self.summary.event_posts += 1
            self.summary.events_accepted += result.accepted
            self.summary.events_duplicate += result.duplicates
            self.summary.events_rejected += len(result.rejected)
            for item in result.rejected:
                self.summary.rejected_reasons[str(item.get("reason", "?"))] += 1


@dataclass
class _UserState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: bool = False
    vanished: bool = False
    arms_seen: set = field(default_factory=set)


class Simulation:
    """One run: owns the shared counters, the pacer and the event batcher."""

    def __init__(self, config: SimulationConfig, client: PlatformClient, catalog: Catalog,
                 on_request: Callable[[SimulationSummary], None] | None = None) -> None:
        self.config, self.client, self.catalog = config, client, catalog
        self.on_request = on_request
        self.users = make_population(catalog, config.users, config.taste, config.seed, config.user_prefix)
        self.summary = SimulationSummary(seed=config.seed, users=config.users)
        self._lock = threading.Lock()
        self._states = [_UserState() for _ in self.users]
        self._schedule = iter(session_schedule(self.users, config.seed))
        self._reserved = 0
        self._stop_reason = ""

    # -- shared state ---------------------------------------------------------------------
    def _stop(self, reason: str) -> None:
        with self._lock:
            self._stop_reason = self._stop_reason or reason

    @property
    def stopped(self) -> bool:
        return bool(self._stop_reason)

    def _next_slot(self) -> tuple[int, int] | None:
        with self._lock:
            return next(self._schedule, None)

    def _reserve_request(self) -> bool:
        with self._lock:
            if self._stop_reason:
                return False
            if self.config.max_requests is not None and self._reserved >= self.config.max_requests:
                self._stop_reason = "max_requests"
                return False
            self._reserved += 1
            return True

    def _variant(self, key: str | None) -> VariantCounts:
        return self.summary.variants.setdefault(key or "none", VariantCounts())

    # -- one session ----------------------------------------------------------------------
    def _play_session(self, user: UserProfile, session: int, deadline: float, pacer: Pacer,
                      batcher: _EventBatcher) -> None:
        config, model, state = self.config, self.config.taste, self._states[user.index]
        rng = session_rng(config.seed, user, session)
        listening = listen_rng(config.seed, user, session)
        seed_track = draw_seed_track(user, self.catalog, rng)
        placement = draw_placement(config.placements, config.seed, user, session)
        shown_in_session: list[int] = []
        for _ in range(model.max_requests_per_session):
            if state.vanished:
                return
            if not state.started and config.drop.vanishes_before_first_request(user):
                state.vanished = True
                with self._lock:
                    self.summary.users_vanished += 1
                    self._variant(config.drop.arm).vanished += 1
                return
            if not self._reserve_request():
                return
            if not pacer.wait(deadline):
                self._stop("duration")
                return
            started = time.perf_counter()
            try:
                rec = self.client.recommend(user.user_id, seed_track.id, config.k, exclude=shown_in_session[-50:],
                                            placement=placement)
            except ApiError as exc:
                with self._lock:
                    self.summary.request_errors += 1
                    self.summary.errors[f"recommendations_{exc.kind}"] += 1
                return
            elapsed_ms = 1000 * (time.perf_counter() - started)
            first = not state.started
            state.started = True
            vanish = first and config.drop.vanishes_after_first_request(user, rec.variant)
            clicked = [] if vanish else choose_clicks(
                user, seed_track, [(item.position, self.catalog.by_id.get(item.track)) for item in rec.items],
                rng, model,
            )
            by_position = {item.position: item.track for item in rec.items}
            listens = choose_listens(user, [self.catalog.by_id.get(by_position[p]) for p in clicked], listening, model)
            self._record(rec, elapsed_ms, first, vanish, len(clicked), listens, state)
            if self.on_request:
                self.on_request(self.summary)
            if vanish:
                state.vanished = True
                return
            if clicked:  # each click with the play that follows it, in the same batch unless the batch fills
                batcher.add(self._click_events(rec, clicked)
                            + play_events(rec, clicked, listens, model.long_listen_s))
            shown_in_session.extend(item.track for item in rec.items)
            seed_track = self._next_seed(user, rec, clicked, rng)
            if seed_track is None:
                return

    def _record(self, rec: Recommendation, elapsed_ms: float, first: bool, vanish: bool, clicks: int,
                listens: list[float], state: _UserState | None = None) -> None:
        long_listens = sum(s >= self.config.taste.long_listen_s for s in listens)
        with self._lock:
            summary, counts = self.summary, self._variant(rec.variant)
            arm_key = f"{rec.experiment}/{rec.variant}" if rec.experiment is not None else f"none/{rec.placement}"
            arm = summary.arms.setdefault(arm_key, VariantCounts())
            arm.requests += 1
            arm.impressions += len(rec.items)
            arm.clicks += clicks
            if state is not None and arm_key not in state.arms_seen:
                state.arms_seen.add(arm_key)
                arm.users += 1
            summary.placements[rec.placement] += 1
            summary.arm_models.setdefault(arm_key, set()).add(rec.model)
            summary.requests += 1
            summary.impressions += len(rec.items)
            summary.clicks += clicks
            summary.latencies_ms.append(elapsed_ms)
            counts.requests += 1
            counts.impressions += len(rec.items)
            counts.clicks += clicks
            for totals in (summary, counts, arm):
                totals.plays += len(listens)
                totals.long_listens += long_listens
                totals.listened_seconds += sum(listens)
            if first:
                summary.users_active += 1
                counts.users += 1
            if vanish:
                summary.users_vanished += 1
                counts.vanished += 1

    @staticmethod
    def _click_events(rec: Recommendation, positions: list[int]) -> list[dict]:
        return click_events(rec, positions)

    def _next_seed(self, user: UserProfile, rec: Recommendation, clicked: list[int], rng: np.random.Generator):
        """After a click the user goes on from the clicked track; without one, maybe from a new seed."""
        model = self.config.taste
        if clicked:
            if rng.random() >= model.continue_after_click:
                return None
            track_id = next(item.track for item in rec.items if item.position == clicked[0])
            return self.catalog.by_id.get(track_id)
        if rng.random() >= model.continue_without_click:
            return None
        return draw_seed_track(user, self.catalog, rng)

    # -- the run --------------------------------------------------------------------------
    def _worker(self, deadline: float, pacer: Pacer, batcher: _EventBatcher) -> None:
        while not self.stopped:
            if time.monotonic() >= deadline:
                self._stop("duration")
                return
            slot = self._next_slot()
            if slot is None:
                return
            user = self.users[slot[0]]
            with self._states[user.index].lock:  # a user plays one session at a time
                self._play_session(user, slot[1], deadline, pacer, batcher)

    def run(self) -> SimulationSummary:
        config = self.config
        started = time.monotonic()
        deadline = started + config.duration_s
        pacer = Pacer(config.rate)
        batcher = _EventBatcher(self.client, self.summary, self._lock, config.event_batch_size, config.event_flush_s)
        threads = [
            threading.Thread(target=self._worker, args=(deadline, pacer, batcher), name=f"player-{n}", daemon=True)
            for n in range(config.workers)
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            batcher.close()
        self.summary.elapsed_s = time.monotonic() - started
        self.summary.stop_reason = self._stop_reason or "all sessions played"
        self.summary.retries = self.client.retried
        return self.summary


def load_catalog(client: PlatformClient, page_size: int = 500) -> tuple[Catalog, int]:
    """The catalog through ``GET /api/v1/tracks``; returns it with the number of rows read."""
    rows = list(client.iter_tracks(page_size=page_size))
    return Catalog.from_rows(rows), len(rows)


def run_simulation(
    config: SimulationConfig,
    client: PlatformClient,
    catalog: Catalog | None = None,
    on_request: Callable[[SimulationSummary], None] | None = None,
) -> SimulationSummary:
    """Play ``config`` against the platform behind ``client`` and return the player-side summary."""
    if catalog is None:
        catalog, _ = load_catalog(client)
    simulation = Simulation(config, client, catalog, on_request)
    summary = simulation.run()
    summary.catalog_tracks = len(catalog.tracks)
    return summary
