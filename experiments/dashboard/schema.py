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
