"""The shape of GET /api/v1/experiments/<id>/results, for the OpenAPI schema only.

The view returns ``ExperimentResults.to_dict()`` (experiments/stats/results.py) as it is; these
serializers never touch a response. They exist so that an analyst's client knows every key and
which numbers can be null: ``to_dict`` turns NaN and infinity into null, and an arm with no
users yet, a control row or a failed estimate has nulls where a number would be. The fuzz test
(tests/web/test_api_fuzz.py) validates real answers, of an empty and of a seeded experiment,
against this shape, so a key added to the dataclasses without a line here fails it.
"""

from __future__ import annotations

from rest_framework import serializers

from experiments.models import Experiment
from experiments.stats.verdict import Outcome

_OUTCOMES = [o.value for o in Outcome]


def _number(help_text: str = "") -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, help_text=help_text or "null when undefined (no data, NaN)")


def _numbers(help_text: str = "") -> serializers.ListField:
    return serializers.ListField(child=serializers.FloatField(allow_null=True), help_text=help_text)


class VariantRowSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    is_control = serializers.BooleanField()
    weight = serializers.FloatField()
    users = serializers.IntegerField(min_value=0)
    impressions = serializers.IntegerField(min_value=0)
    clicks = serializers.IntegerField(min_value=0)
    ctr = _number()
    ctr_ci_lower = _number()
    ctr_ci_upper = _number()
    lift = _number("Relative lift over the control, delta method; null on the control row")
    lift_ci_lower = _number()
    lift_ci_upper = _number()
    absolute_difference = _number()
    absolute_ci_lower = _number()
    absolute_ci_upper = _number()
    p_value = _number("Delta method, Holm-adjusted with more than two arms")
    always_valid_p_value = _number()
    always_valid_ci_lower = _number()
    always_valid_ci_upper = _number()
    naive_p_value = _number("Per-impression z-test, for contrast only")
    chance_to_win = _number()
    error = serializers.CharField(allow_null=True, help_text="Why an estimate could not be computed")


class EstimateSerializer(serializers.Serializer):
    effect = _number()
    standard_error = _number()
    ci_lower = _number()
    ci_upper = _number()
    p_value = _number()
    error = serializers.CharField(allow_null=True)


class ComparisonSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The treatment arm compared with the control")
    relative = EstimateSerializer()
    absolute = EstimateSerializer()
    sequential = EstimateSerializer()
    naive = EstimateSerializer()
    chance_to_win = _number()
    significant = serializers.BooleanField(help_text="The verdict calls a winner or a loser (outcome win or loss): "
                                                     "always-valid, Holm-adjusted p below alpha with enough users")
    outcome = serializers.ChoiceField(choices=_OUTCOMES, help_text="This arm's verdict, as a code")


class SrmSerializer(serializers.Serializer):
    p_value = _number()
    flagged = serializers.BooleanField()
    message = serializers.CharField()
    observed = serializers.ListField(child=serializers.IntegerField(min_value=0))
    expected = _numbers()


class PowerRowSerializer(serializers.Serializer):
    key = serializers.CharField()
    mde = _number()
    mde_sequential = _number()
    power_at_target = _number()
    target_effect = serializers.FloatField()
    days_to_decision = serializers.IntegerField(allow_null=True)
    new_users_per_day = _number()
    time_to_decision = serializers.CharField(help_text='In words: "decided", "now", "about 3 days", '
                                                       '"no new users lately", "more than a year"')


class SeriesSerializer(serializers.Serializer):
    day = serializers.ListField(child=serializers.DateField())
    users = serializers.ListField(child=serializers.IntegerField(min_value=0))
    ctr = _numbers()
    ctr_lower = _numbers()
    ctr_upper = _numbers()


class LiftSeriesSerializer(serializers.Serializer):
    day = serializers.ListField(child=serializers.DateField())
    lift = _numbers()
    ci_lower = _numbers()
    ci_upper = _numbers()
    cs_lower = _numbers()
    cs_upper = _numbers()
    p_value = _numbers()
    always_valid_p = _numbers()
    mde = _numbers()
    mde_sequential = _numbers()


class HourlySeriesSerializer(serializers.Serializer):
    hour = serializers.ListField(child=serializers.DateTimeField())
    users = serializers.ListField(child=serializers.IntegerField(min_value=0))
    ctr = _numbers()
    ctr_lower = _numbers()
    ctr_upper = _numbers()


class HourlyLiftSeriesSerializer(LiftSeriesSerializer):
    day = None
    hour = serializers.ListField(child=serializers.DateTimeField())


class PositionsSerializer(serializers.Serializer):
    position = serializers.ListField(child=serializers.IntegerField(min_value=1))
    impressions = serializers.ListField(child=serializers.IntegerField(min_value=0))
    clicks = serializers.ListField(child=serializers.IntegerField(min_value=0))
    ctr = _numbers()


class HistogramSerializer(serializers.Serializer):
    edges = serializers.ListField(child=serializers.FloatField(), help_text="Bin edges of per-user CTR, 0-1")
    counts = serializers.DictField(child=serializers.ListField(child=serializers.IntegerField(min_value=0)),
                                   help_text="Users per bin, by variant key")


class AnalysisConfigSerializer(serializers.Serializer):
    alpha = serializers.FloatField()
    n_star = serializers.FloatField()
    power = serializers.FloatField()
    target_effect = serializers.FloatField()


class MetricSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    direction = serializers.ChoiceField(choices=["higher_is_better", "lower_is_better"])
    role = serializers.ChoiceField(choices=["success", "guardrail", "secondary"])
    margin = serializers.FloatField(help_text="Guardrails: the relative lift in the worse direction still "
                                              "acceptable (non-inferiority margin); 0 otherwise")
    winsor_percentile = _number("Per-user numerators capped at this pooled percentile; null: not capped")
    cap = _number()
    users_capped = serializers.IntegerField(min_value=0)
    pre_cap = _number("The cap on the pre-period numerator; null without pre-period data")
    values = serializers.DictField(child=serializers.FloatField(allow_null=True), help_text="By variant key")


class MetricComparisonSerializer(serializers.Serializer):
    metric = serializers.CharField()
    key = serializers.CharField(help_text="The treatment arm compared with the control")
    raw = EstimateSerializer(help_text="Relative lift, delta method, fixed horizon")
    cuped = EstimateSerializer(help_text="Relative lift adjusted by pre-period data (CUPED for ratio metrics)")
    variance_reduction = _number()
    theta = _numbers("CUPED coefficients: on the pre-period ratio, on the has-pre indicator")
    users_with_pre = serializers.IntegerField(min_value=0)


class GroupSequentialSerializer(serializers.Serializer):
    key = serializers.CharField()
    metric = serializers.CharField()
    max_users = serializers.FloatField(help_text="Planned maximum, both arms")
    spending = serializers.ChoiceField(choices=["obrien_fleming", "power"])
    information = _numbers("Users / max_users at each look")
    z = _numbers()
    boundary = _numbers("Two-sided: |z| >= boundary rejects")
    crossed_at = serializers.IntegerField(allow_null=True)
    significant = serializers.BooleanField()
    finished = serializers.BooleanField()


class DecisionSerializer(serializers.Serializer):
    key = serializers.CharField()
    decision = serializers.ChoiceField(choices=["ship", "worse", "guardrail", "not_better", "not_enough_data"])
    ship = serializers.BooleanField()
    text = serializers.CharField()
    blocking = serializers.ListField(child=serializers.CharField())
    test = serializers.ChoiceField(choices=["group_sequential", "always_valid"])


class ExperimentResultsSerializer(serializers.Serializer):
    experiment_id = serializers.IntegerField()
    name = serializers.CharField()
    hypothesis = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Experiment.Status.choices)
    started_at = serializers.DateTimeField(allow_null=True)
    age_days = _number("null until started")
    variants = VariantRowSerializer(many=True, help_text="The control first")
    comparisons = ComparisonSerializer(many=True, help_text="One per treatment arm")
    srm = SrmSerializer(help_text="Sample-ratio mismatch check")
    power = PowerRowSerializer(many=True)
    verdict = serializers.CharField()
    outcome = serializers.ChoiceField(choices=_OUTCOMES, help_text="The verdict as a code (srm: do not trust "
                                                                   "the results; win if any arm wins, ...)")
    series = serializers.DictField(child=SeriesSerializer(), help_text="Cumulative daily series, by variant key")
    lift_series = serializers.DictField(child=LiftSeriesSerializer(), help_text="By treatment key")
    positions = serializers.DictField(child=PositionsSerializer(), help_text="CTR by position, by variant key")
    histogram = HistogramSerializer()
    config = AnalysisConfigSerializer()
    computed_at = serializers.DateTimeField()
    analysis_seconds = serializers.FloatField(min_value=0)
    # Present once the experiment has users with impressions: its metric plan (issue 24).
    metrics = MetricSerializer(many=True, required=False)
    metric_comparisons = MetricComparisonSerializer(many=True, required=False)
    group_sequential = GroupSequentialSerializer(many=True, required=False)
    decisions = DecisionSerializer(many=True, required=False)
    # Present while the experiment is younger than three days: the charts' series per hour.
    hourly_series = serializers.DictField(child=HourlySeriesSerializer(), required=False,
                                          help_text="Cumulative hourly series, by variant key")
    hourly_lift_series = serializers.DictField(child=HourlyLiftSeriesSerializer(), required=False,
                                               help_text="By treatment key, per hour")


# --- an interleaving experiment (experiments/stats/interleaving_report.py) ----------------------------------------

class TeamSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The variant whose ranker drafts for this team")
    name = serializers.CharField()
    team = serializers.IntegerField(min_value=1, max_value=2, help_text="1 = A (the control's ranker), 2 = B")


class BalanceSerializer(serializers.Serializer):
    share = _number("Observed share (first picks of A; B's share of credited clicks)")
    p_value = _number()
    flagged = serializers.BooleanField()
    message = serializers.CharField()


class InterleavingSeriesSerializer(serializers.Serializer):
    day = serializers.ListField(child=serializers.DateField())
    users = serializers.ListField(child=serializers.IntegerField(min_value=0))
    share_b = _numbers("Cumulative share of B credits")
    ci_lower = _numbers()
    ci_upper = _numbers()
    cs_lower = _numbers("Always-valid confidence sequence (running intersection)")
    cs_upper = _numbers()
    always_valid_p = _numbers("Running minimum")


class InterleavingPositionsSerializer(serializers.Serializer):
    position = serializers.ListField(child=serializers.IntegerField(min_value=1))
    pages = serializers.ListField(child=serializers.IntegerField(min_value=0))
    slots_b = serializers.ListField(child=serializers.IntegerField(min_value=0))
    clicks_a = serializers.ListField(child=serializers.IntegerField(min_value=0))
    clicks_b = serializers.ListField(child=serializers.IntegerField(min_value=0))
    share_b = _numbers()


class InterleavingConfigSerializer(serializers.Serializer):
    alpha = serializers.FloatField()
    n_star = serializers.FloatField()
    min_users = serializers.FloatField()


class InterleavingResultsSerializer(serializers.Serializer):
    experiment_id = serializers.IntegerField()
    name = serializers.CharField()
    hypothesis = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Experiment.Status.choices)
    started_at = serializers.DateTimeField(allow_null=True)
    age_days = _number("null until started")
    kind = serializers.ChoiceField(choices=["interleaving"])
    teams = TeamSerializer(many=True, help_text="A then B")
    users = serializers.IntegerField(min_value=0)
    pages = serializers.IntegerField(min_value=0)
    credits_a = serializers.IntegerField(min_value=0)
    credits_b = serializers.IntegerField(min_value=0)
    share_b = EstimateSerializer(help_text="Share of B credits, delta method; p of no preference (0.5)")
    share_b_sequential = EstimateSerializer(help_text="The same with the confidence sequence; always-valid p")
    preference = EstimateSerializer(help_text="Mean per-user (B - A) / (A + B), t-interval")
    listens_a = serializers.IntegerField(min_value=0, help_text="Long listens (>= 30 s) of items team A drafted")
    listens_b = serializers.IntegerField(min_value=0)
    listen_share_b = EstimateSerializer(help_text="B's share of the long listens, delta method; shown, not decided on")
    first_pick = BalanceSerializer()
    position_balance = BalanceSerializer()
    verdict = serializers.CharField()
    outcome = serializers.ChoiceField(choices=_OUTCOMES)
    significant = serializers.BooleanField()
    series = InterleavingSeriesSerializer()
    positions = InterleavingPositionsSerializer()
    config = InterleavingConfigSerializer()
    computed_at = serializers.DateTimeField()
    analysis_seconds = serializers.FloatField(min_value=0)
