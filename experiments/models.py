"""Experiments, variants, assignments, the raw events and the aggregates the worker keeps.

The event and aggregate tables are written only by the Celery worker from the outbox
(``experiments.events.ingest``), in batches and idempotently by ``event_id``. Their
foreign keys carry no database constraint on purpose: at tens of thousands of rows a
second, a constraint check per row takes a KEY SHARE lock on the same few experiment and
variant rows from every concurrent batch (multixact churn); the ORM relation is kept for
joins and admin display.
"""

from __future__ import annotations

import secrets

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, RangeOperators
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Func, Q

from recommender.models import EmbeddingModel, Track


def new_salt() -> str:
    return secrets.token_hex(8)


def _event_fk(to, related_name: str | None = "+", null: bool = False):
    """A relation without a database constraint or its own index (see the module docstring).

    Every index is paid on each of the worker's inserts; the tables that need lookups have
    their composite indexes and unique constraints, the raw event tables only ``event_id``.
    ``null``: the raw event tables also hold the traffic served outside any experiment.
    """
    return models.ForeignKey(to, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
                             related_name=related_name, null=null, blank=null)


def _count(**kwargs) -> models.BigIntegerField:
    """A sum column with a database default too: raw SQL writers (the worker, benches) may leave it out."""
    return models.BigIntegerField(default=0, db_default=0, **kwargs)


def _seconds(**kwargs) -> models.FloatField:
    return models.FloatField(default=0.0, db_default=0.0, **kwargs)


def default_secondary_metrics() -> list[str]:
    return ["stream_rate"]


def default_guardrails() -> list[dict]:
    return [{"metric": "skip_rate", "margin": 0.05}, {"metric": "seconds_per_click", "margin": 0.05}]


DEFAULT_PLACEMENT = "track_page"


class Placement(models.Model):
    """Where a player shows recommendations (``track_page``, ``autoplay``, ...): a default model and a layer.

    The default model serves every request of the placement that no experiment claims; with none set, the
    model active for the baseline arm does. The layer salt hashes users into the placement's 10,000 buckets
    (``experiments.layers``); changing it would move every user, so it is fixed once created.
    """

    key = models.SlugField(max_length=50, unique=True, help_text="The API's placement parameter")
    name = models.CharField(max_length=200, blank=True)
    default_model = models.ForeignKey(
        EmbeddingModel, on_delete=models.PROTECT, null=True, blank=True, related_name="default_for_placements",
        help_text="Serves every request no experiment claims; empty: the model active for the baseline arm")
    layer_salt = models.CharField(max_length=64, default=new_salt, help_text="Hash salt of the layer; fixed")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class Experiment(models.Model):
    class Kind(models.TextChoices):
        AB = "ab", "A/B test"
        # Every user in the experiment sees one page merged from both variants' rankers by team draft
        # (experiments.team_draft); clicks credit the team of the item. Exactly two variants.
        INTERLEAVING = "interleaving", "interleaving (team draft)"
        # Users of the placement kept on the model it had when the holdout started ("holdout" arm, the control),
        # against an equal measured share served whatever the placement ships ("launched" arm).
        HOLDOUT = "holdout", "holdout"

    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        PAUSED = "paused"
        STOPPED = "stopped"
        # A stopped experiment put away: hidden from the default admin list, its events and results kept.
        # Experiments that ever ran are archived, never deleted (their event rows would be orphaned).
        ARCHIVED = "archived"

    name = models.CharField(max_length=200, unique=True)
    hypothesis = models.TextField(blank=True)
    placement = models.ForeignKey(Placement, to_field="key", db_column="placement", on_delete=models.PROTECT,
                                  default=DEFAULT_PLACEMENT, related_name="experiments")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.AB,
                            help_text="A/B: each user sees one variant; interleaving: each user sees both, merged; "
                            "holdout: users kept on the model of its start")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    salt = models.CharField(max_length=64, default=new_salt, help_text="Hash salt of the assignment; locked on start")
    traffic_fraction = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of the placement's users (its layer's buckets) the experiment takes when it starts; "
                  "the others get the placement's default model or another experiment",
    )
    primary_metric = models.CharField(max_length=20, default="ctr")
    scheduled_start_at = models.DateTimeField(null=True, blank=True,
                                              help_text="Started by the worker's schedule clock at this time")
    scheduled_stop_at = models.DateTimeField(null=True, blank=True,
                                             help_text="Stopped by the worker's schedule clock at this time")
    pre_period_days = models.PositiveSmallIntegerField(
        default=14, db_default=14, validators=[MaxValueValidator(90)],
        help_text="CUPED lookback: days of a user's traffic before their first exposure, summed when the user "
                  "enters the experiment (0: no pre-period)",
    )
    # The metric plan (experiments/plan.py turns these into the statistics core's ExperimentPlan): what the
    # experiment is judged on, fixed before it starts, as GrowthBook's goal/guardrail metrics.
    secondary_metrics = models.JSONField(
        default=default_secondary_metrics, blank=True,
        help_text='Metric keys shown beside the primary one, e.g. ["stream_rate"]')
    guardrails = models.JSONField(
        default=default_guardrails, blank=True,
        help_text='Metrics that must not get worse by more than a relative margin, e.g. '
                  '[{"metric": "skip_rate", "margin": 0.05}]')
    planned_users_per_arm = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Maximum users per arm fixed at the start (group-sequential test); empty: the always-valid test")
    winsor_percentile = models.FloatField(
        null=True, blank=True, default=99.9, db_default=99.9,
        validators=[MinValueValidator(50.0), MaxValueValidator(100.0)],
        help_text="Per-user numerators capped at this pooled percentile; empty: no capping")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(traffic_fraction__gte=0.0) & Q(traffic_fraction__lte=1.0), name="traffic_fraction_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def is_locked(self) -> bool:
        """Variants, weights, salt and traffic fraction are fixed once the experiment has started."""
        return self.status != self.Status.DRAFT or self.started_at is not None


class BucketAllocation(models.Model):
    """Buckets [start, end) of a placement's layer held by an experiment from its start until it stops.

    Released rows stay (``released_at``) as the record of who held what; the exclusion constraint keeps two
    held ranges of one placement from overlapping, so no user is ever in two experiments of a layer.
    """

    placement = models.ForeignKey(Placement, to_field="key", db_column="placement", on_delete=models.PROTECT,
                                  related_name="allocations")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="allocations")
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    allocated_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["placement", "start"]
        constraints = [
            models.CheckConstraint(condition=Q(start__gte=0) & Q(end__lte=10_000) & Q(start__lt=F("end")),
                                   name="allocation_within_layer"),
            ExclusionConstraint(
                name="no_shared_buckets_in_a_layer",
                expressions=[(F("placement"), RangeOperators.EQUAL),
                             (Func(F("start"), F("end"), function="int4range"), RangeOperators.OVERLAPS)],
                condition=Q(released_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.placement_id} {self.start}-{self.end - 1}"


class Launch(models.Model):
    """A model made a placement's default: who, when, from which experiment, variant and verdict."""

    placement = models.ForeignKey(Placement, to_field="key", db_column="placement", on_delete=models.PROTECT,
                                  related_name="launches")
    model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, related_name="+")
    previous_model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, null=True, related_name="+")
    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, null=True, related_name="launches")
    variant_key = models.CharField(max_length=50, blank=True)
    verdict = models.TextField(blank=True, help_text="The experiment's verdict when it shipped")
    launched_by = models.CharField(max_length=150, blank=True)
    launched_at = models.DateTimeField()

    class Meta:
        ordering = ["-launched_at"]


class Variant(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    key = models.SlugField(max_length=50, help_text="Short id shown to players, e.g. control / treatment")
    name = models.CharField(max_length=200, blank=True)
    embedding_model = models.ForeignKey(EmbeddingModel, on_delete=models.PROTECT, related_name="variants")
    weight = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    is_control = models.BooleanField(default=False)

    class Meta:
        ordering = ["experiment_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="unique_variant_key"),
            models.UniqueConstraint(fields=["experiment"], condition=Q(is_control=True), name="one_control_variant"),
            models.CheckConstraint(condition=Q(weight__gte=1), name="variant_weight_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.name}/{self.key}"


class Assignment(models.Model):
    """A user's first exposure to an experiment (the variant itself follows from the hash)."""

    experiment = _event_fk(Experiment, related_name="assignments")
    variant = _event_fk(Variant)
    user_key = models.BigIntegerField()
    user_id = models.CharField(max_length=200)
    first_exposure_at = models.DateTimeField()

    class Meta:
        # No (experiment, variant) index: nothing reads assignments by arm, and each first visit paid its entry.
        constraints = [models.UniqueConstraint(fields=["experiment", "user_key"], name="one_assignment_per_user")]


class Page(models.Model):
    """One page of recommendations served to a user: the impression store.

    ``experiment`` and ``variant`` are NULL for a page served outside any experiment (none running, or
    the user outside its traffic fraction): such pages feed only the all-traffic rollup
    (``UserDailyTraffic``, CUPED's pre-period), never an experiment's aggregates.
    One row per page, not per item: a click names (request, position, track), which the page
    answers by primary key and an array index, and the aggregates add k (per user) and one per
    position (per position rollup) from the page. Position p is ``track_ids[p]`` (1-based, as
    PostgreSQL arrays are). The primary key is the request id, time-ordered (UUID v7), so the
    worker's inserts append to the index. ``Impression`` is the per-item view over these rows.
    Later issues add per-item columns (team, propensity) as arrays beside ``track_ids``.
    """

    request_id = models.UUIDField(primary_key=True)
    experiment = _event_fk(Experiment, null=True)
    variant = _event_fk(Variant, null=True)
    user_key = models.BigIntegerField()
    placement = models.CharField(max_length=50, default="track_page")
    created_at = models.DateTimeField(help_text="Server time of the request")
    track_ids = ArrayField(models.BigIntegerField())
    scores = ArrayField(models.FloatField())
    # Interleaving experiments: the team that drafted each item (1 = the control's ranker, 2 = the other's);
    # NULL on A/B pages. ``variant`` is then the control variant.
    teams = ArrayField(models.SmallIntegerField(), null=True, blank=True)


class Impression(models.Model):
    """One item shown, read-only: a SQL view that unnests ``Page`` rows (exports, ad-hoc queries, old reports).

    ``event_id`` is ``impression_event_id(request_id, position)``, as the per-item table that
    preceded the pages stored it, so old exports keep their ids."""

    event_id = models.UUIDField(primary_key=True)
    request_id = models.UUIDField()
    experiment = _event_fk(Experiment, null=True)
    variant = _event_fk(Variant, null=True)
    user_key = models.BigIntegerField()
    track = _event_fk(Track)
    position = models.PositiveSmallIntegerField(help_text="1-based")
    score = models.FloatField()
    created_at = models.DateTimeField(help_text="Server receive time")

    class Meta:
        managed = False
        db_table = "experiments_impression"


class Click(models.Model):
    event_id = models.UUIDField(unique=True)
    request_id = models.UUIDField()
    experiment = _event_fk(Experiment, null=True)  # NULL: the page was served outside any experiment
    variant = _event_fk(Variant, null=True)
    user_key = models.BigIntegerField()
    track = _event_fk(Track)
    position = models.PositiveSmallIntegerField(help_text="1-based")
    client_time = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(help_text="Server receive time")
    team = models.SmallIntegerField(null=True, blank=True, help_text="Interleaving: the team credited (1 or 2)")


class Play(models.Model):
    """A listen that followed a click: at most one per clicked item (``event_id`` = ``play_event_id``).

    A play of >= ``LONG_LISTEN_SECONDS`` (30 s) is a long listen (a stream), a shorter one a short play
    (a skip) in every aggregate; ``skipped`` is the player's own flag, kept as sent."""

    event_id = models.UUIDField(unique=True)
    request_id = models.UUIDField()
    experiment = _event_fk(Experiment, null=True)
    variant = _event_fk(Variant, null=True)
    user_key = models.BigIntegerField()
    track = _event_fk(Track)
    position = models.PositiveSmallIntegerField(help_text="1-based")
    listened_seconds = models.FloatField()
    skipped = models.BooleanField()
    client_time = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(help_text="Server receive time")
    team = models.SmallIntegerField(null=True, blank=True, help_text="Interleaving: the team credited (1 or 2)")


class ListeningSums(models.Model):
    """What a user did, summed: the numerators and denominators of every ratio metric.

    Long listens are plays of >= 30 s, short plays (skips) the others: plays = long + short."""

    impressions = _count()
    clicks = _count()
    plays = _count()
    long_listens = _count()
    short_plays = _count()
    listened_seconds = _seconds()

    class Meta:
        abstract = True


class UserAggregate(ListeningSums):
    """Per-user sums over the whole experiment: the input of the delta method and of CUPED.

    ``pre_*``: the same sums over the user's traffic (``UserDailyTraffic``, any experiment or none) on the
    ``Experiment.pre_period_days`` days before the day of their first exposure, filled once, when the worker
    creates the row; all 0 for a user without traffic then (or an experiment with no pre-period)."""

    experiment = _event_fk(Experiment)
    variant = _event_fk(Variant)
    user_key = models.BigIntegerField()
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    pre_impressions = _count()
    pre_clicks = _count()
    pre_plays = _count()
    pre_long_listens = _count()
    pre_short_plays = _count()
    pre_listened_seconds = _seconds()

    class Meta:
        # No (experiment, variant) index: the analysis reads an experiment's rows whole (the unique index's
        # leading column, or a parallel scan) and groups by arm; each user new to an experiment paid its entry.
        constraints = [models.UniqueConstraint(fields=["experiment", "user_key"], name="one_aggregate_per_user")]


class UserDailyTraffic(ListeningSums):
    """A user's day of ALL served traffic, in an experiment or not: where CUPED's pre-period comes from.

    One row per (user, day), whatever experiment (if any) served the pages; a page, click or play
    counts once, on its server receive day (UTC)."""

    user_key = models.BigIntegerField()
    day = models.DateField(help_text="Server receive day (UTC)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user_key", "day"], name="one_traffic_row_per_user_day")]


class PositionRollup(models.Model):
    experiment = _event_fk(Experiment)
    variant = _event_fk(Variant)
    position = models.PositiveSmallIntegerField()
    impressions = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "variant", "position"], name="one_rollup_per_position")
        ]


class VariantDailyMoments(models.Model):
    """Moments of the cumulative per-user sums as of the end of ``day``.

    Kept incrementally from each user's old and new cumulative values, so a time series
    of a delta-method ratio reads one row per variant and day. The squares and products kept
    are those of the ratio metrics: CTR (clicks / impressions), stream rate (long listens /
    impressions), listened seconds per click, skip rate (short plays / plays).
    """

    experiment = _event_fk(Experiment)
    variant = _event_fk(Variant)
    day = models.DateField()
    users = models.BigIntegerField(default=0)
    sum_impressions = models.BigIntegerField(default=0)
    sum_clicks = models.BigIntegerField(default=0)
    sum_impressions_sq = models.BigIntegerField(default=0)
    sum_clicks_sq = models.BigIntegerField(default=0)
    sum_impressions_clicks = models.BigIntegerField(default=0)
    sum_plays = _count()
    sum_long_listens = _count()
    sum_short_plays = _count()
    sum_listened_seconds = _seconds()
    sum_plays_sq = _count()
    sum_long_listens_sq = _count()
    sum_short_plays_sq = _count()
    sum_listened_seconds_sq = _seconds()
    sum_impressions_long_listens = _count()
    sum_clicks_listened_seconds = _seconds()
    sum_plays_short_plays = _count()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "variant", "day"], name="one_moments_per_variant_day")
        ]


class VariantMoments(models.Model):
    """Every moment a metric plan can ask for, of the raw per-user sums of one arm's users (impressions > 0),
    and their per-user CTR histogram: one float array in the order of ``stats.metric_moments.MomentLayout``.

    Kept by the worker from each user's old and new sums, batch by batch (experiments/variant_moments.py), so
    that a full analysis reads two short arrays instead of scanning every user; winsorisation is a correction
    over the users at the top (a filtered pass), CUPED and the ship decision need nothing else.
    """

    experiment = _event_fk(Experiment)
    variant = _event_fk(Variant)
    moments = ArrayField(models.FloatField())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "variant"], name="one_moments_per_variant")]


class InterleavingUserDay(models.Model):
    """Per user and day of an interleaving experiment: pages, first picks of team A, each team's credits (clicks)
    and each team's long listens (plays of >= 30 s of the team's items).

    The analysis sums a user's days for the totals and cumulates them for the series over time
    (``experiments.analysis``); written by the worker from new pages, clicks and plays only, like the others."""

    experiment = _event_fk(Experiment)
    user_key = models.BigIntegerField()
    day = models.DateField(help_text="Server receive day (UTC)")
    pages = models.BigIntegerField(default=0)
    a_first = models.BigIntegerField(default=0)
    credits_a = models.BigIntegerField(default=0)
    credits_b = models.BigIntegerField(default=0)
    listens_a = models.BigIntegerField(default=0)
    listens_b = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "user_key", "day"],
                                               name="one_interleaving_row_per_user_day")]


class InterleavingPositionRollup(models.Model):
    """Per position of an interleaving experiment: pages that showed it, those where team B held it, credits."""

    experiment = _event_fk(Experiment)
    position = models.PositiveSmallIntegerField()
    pages = models.BigIntegerField(default=0)
    slots_b = models.BigIntegerField(default=0)
    clicks_a = models.BigIntegerField(default=0)
    clicks_b = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "position"],
                                               name="one_interleaving_rollup_per_position")]


class OutboxKind(models.IntegerChoices):
    IMPRESSION = 1
    CLICK = 2
    # One narrow row per page served (``event_id`` = ``request_id``): serving writes the page itself to ``Page``
    # in the same statement; this row only hands it to the worker's aggregates, which it leaves when they have it.
    RECOMMENDATION = 3
    # A listen after a click: ``listened_seconds`` and ``skipped`` set, ``event_id`` = ``play_event_id``.
    PLAY = 4


# The outbox's event ids are unique for the events that clients send (clicks: a resent event is the same row).
# A page's row is unique by its request id in ``Page`` already: leaving it out of the index saves an index entry
# per page served. Statements that rely on the index (``ON CONFLICT (event_id)``) repeat this predicate.
EVENT_ID_UNIQUE_WHERE = f"kind <> {int(OutboxKind.RECOMMENDATION)}"


class OutboxColumns(models.Model):
    """The columns of an accepted event on its way to the worker (format: ``experiments.events.outbox``)."""

    kind = models.PositiveSmallIntegerField(choices=OutboxKind.choices)
    event_id = models.UUIDField()
    request_id = models.UUIDField()
    experiment_id = models.BigIntegerField(null=True, blank=True)  # NULL: served outside any experiment
    variant_id = models.BigIntegerField(null=True, blank=True)
    user_key = models.BigIntegerField()
    user_id = models.CharField(max_length=200, blank=True)
    track_id = models.BigIntegerField()
    position = models.PositiveSmallIntegerField()
    score = models.FloatField(null=True, blank=True)
    client_time = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    listened_seconds = models.FloatField(null=True, blank=True)  # PLAY rows only
    skipped = models.BooleanField(null=True, blank=True)  # PLAY rows only
    # CLICK and PLAY rows on an interleaved page: the item's team (the page's own teams live in Page only)
    team = models.SmallIntegerField(null=True, blank=True)

    class Meta:
        abstract = True


class EventOutbox(OutboxColumns):
    """Events accepted by the API, waiting for the relay to carry them to the worker.

    Written in the request's own transaction; a row disappears only when the worker has
    committed the event (and its aggregates), so an accepted event survives a dead broker
    or worker. Plain integer columns: this is a queue, not a model of the domain.
    """

    Kind = OutboxKind

    class Meta:
        constraints = [  # exactly once: a resent event is the same row (pages: see EVENT_ID_UNIQUE_WHERE)
            models.UniqueConstraint(fields=["event_id"], condition=~Q(kind=OutboxKind.RECOMMENDATION),
                                    name="one_outbox_row_per_event"),
        ]


class EventQuarantine(OutboxColumns):
    """Outbox rows the worker could not land, kept aside so that one bad row never blocks the rest.

    The columns are the outbox's own (the row moves here whole, same id), plus why and when.
    ``manage.py replay_quarantine`` (or the admin action) moves rows back into the outbox.
    """

    id = models.BigIntegerField(primary_key=True)  # the outbox id it had
    error = models.TextField()
    quarantined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "quarantined event"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"outbox row {self.id} ({self.get_kind_display()}): {self.error[:80]}"


class RelayHeartbeat(models.Model):
    """The active outbox relay's last sign of life and counters (one row, written every few seconds)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    beat_at = models.DateTimeField()
    host = models.CharField(max_length=200, blank=True)
    sent_rows = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    last_error = models.TextField(blank=True)
