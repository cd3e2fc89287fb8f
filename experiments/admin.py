"""Staff admin: experiments with inline variants and start/pause/stop/archive actions, and API keys.

A started experiment's variants, weights, salt and traffic fraction are read-only here,
and the services refuse the change too (``services.ensure_unlocked``). Only a draft that
never ran can be deleted (its one-by-one and bulk delete, and ``services.experiment_delete``);
a finished experiment is archived and the list hides archived ones unless asked.
"""

from __future__ import annotations

from collections.abc import Iterator

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet

from experiments import services
from experiments.models import Experiment, Variant
from experiments.plan import PlanError, plan_of, planned_users_from_power
from experiments.stats.metrics import METRICS

PLAN_FIELDS = ("primary_metric", "secondary_metrics", "guardrails", "planned_users_per_arm", "winsor_percentile",
               "pre_period_days")
LOCKED_EXPERIMENT_FIELDS = ("kind", "salt", "traffic_fraction", *PLAN_FIELDS)


class ExperimentForm(forms.ModelForm):
    """The plan's fields validated against the metric registry (experiments/plan.py), each error on its field; and
    the power planner: a baseline CTR and a relative MDE fill an empty planned size."""

    plan_baseline_rate = forms.FloatField(
        required=False, min_value=0.0001, max_value=0.9999, label="Power planner: baseline CTR",
        help_text="With an MDE and no planned size: the group-sequential maximum users per arm (80 % power, "
                  "alpha 0.05, 14 daily looks, 10 impressions per user) is filled in")
    plan_mde = forms.FloatField(required=False, min_value=0.001, max_value=10, label="Power planner: relative MDE",
                                help_text="e.g. 0.1 for a +10 % lift")

    class Meta:
        model = Experiment
        fields = "__all__"

    DEFAULTED = ("primary_metric", "secondary_metrics", "guardrails", "pre_period_days")  # empty: the default plan

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.DEFAULTED:
            if name in self.fields:
                self.fields[name].required = False
        known = ", ".join(f"{key} ({m.label})" for key, m in METRICS.items())
        for name in ("primary_metric", "secondary_metrics", "guardrails"):
            if name in self.fields:
                self.fields[name].help_text = f"{self.fields[name].help_text} Metrics: {known}.".strip()

    def clean(self):
        cleaned = super().clean()
        for name in self.DEFAULTED:
            if name in cleaned and cleaned[name] in (None, ""):
                cleaned[name] = Experiment._meta.get_field(name).get_default()
        value = {f: cleaned[f] if f in cleaned else getattr(self.instance, f) for f in PLAN_FIELDS}
        rate, mde = cleaned.get("plan_baseline_rate"), cleaned.get("plan_mde")
        if (rate is None) != (mde is None):
            self.add_error("plan_mde" if mde is None else "plan_baseline_rate",
                           "the power planner needs both a baseline CTR and an MDE")
        elif rate is not None and "planned_users_per_arm" in cleaned and value["planned_users_per_arm"] is None:
            value["planned_users_per_arm"] = cleaned["planned_users_per_arm"] = planned_users_from_power(rate, mde)
        try:
            plan_of(**{k: v for k, v in value.items() if k != "pre_period_days"})
        except PlanError as error:
            for field, message in error.errors.items():
                if field in self.fields:
                    self.add_error(field, message)
                else:
                    raise ValidationError(f"{field}: {message}") from error
        return cleaned


class VariantInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if self.instance.pk and self.instance.is_locked and self.has_changed():
            raise ValidationError("this experiment has started: its variants and weights are locked")
        live = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if sum(bool(f.cleaned_data.get("is_control")) for f in live) > 1:
            raise ValidationError("at most one variant can be the control")
        kind = getattr(self.instance, "kind", Experiment.Kind.AB)
        if kind == Experiment.Kind.INTERLEAVING and len(live) != 2:
            raise ValidationError(services.interleaving_variant_count_error(len(live)))


class VariantInline(admin.TabularInline):
    model = Variant
    formset = VariantInlineFormSet
    extra = 2
    fields = ("key", "name", "embedding_model", "weight", "is_control")

    def _locked(self, obj) -> bool:
        return obj is not None and obj.is_locked

    def get_readonly_fields(self, request, obj=None):
        return self.fields if self._locked(obj) else ()

    def has_add_permission(self, request, obj=None) -> bool:
        return not self._locked(obj) and super().has_add_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return not self._locked(obj) and super().has_delete_permission(request, obj)

    def get_extra(self, request, obj=None, **kwargs) -> int:
        return 0 if self._locked(obj) else self.extra


class ExperimentStatusFilter(admin.SimpleListFilter):
    """The status filter, defaulting to "not archived": archived experiments stay out of the way until asked for."""

    title = "status"
    parameter_name = "status"
    ALL = "all"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [*Experiment.Status.choices, (self.ALL, "All, archived too")]

    def choices(self, changelist) -> Iterator[dict]:
        yield {"selected": self.value() is None, "display": "Not archived",
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}
        for lookup, title in self.lookup_choices:
            yield {"selected": self.value() == str(lookup), "display": title,
                   "query_string": changelist.get_query_string({self.parameter_name: lookup})}

    def queryset(self, request, queryset: QuerySet[Experiment]) -> QuerySet[Experiment]:
        value = self.value()
        if value is None:
            return queryset.exclude(status=Experiment.Status.ARCHIVED)
        if value == self.ALL:
            return queryset
        return queryset.filter(status=value)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "status", "traffic_fraction", "started_at", "stopped_at", "created_at")
    list_filter = (ExperimentStatusFilter,)
    search_fields = ("name", "hypothesis")
    inlines = [VariantInline]
    actions = ["start_experiments", "pause_experiments", "stop_experiments", "archive_experiments"]
    form = ExperimentForm
    fieldsets = (
        (None, {"fields": ("name", "kind", "hypothesis", "status", "traffic_fraction", "salt", "started_at",
                           "stopped_at")}),
        ("Metric plan (locked once started)", {"fields": (*PLAN_FIELDS, "plan_baseline_rate", "plan_mde")}),
    )

    def get_fieldsets(self, request, obj=None):
        if obj is not None and obj.is_locked:  # the planner fills a draft's planned size only
            return tuple((name, {"fields": tuple(f for f in opts["fields"] if not f.startswith("plan_"))})
                         for name, opts in self.fieldsets)
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = ["status", "started_at", "stopped_at"]
        if obj is not None and obj.is_locked:
            readonly += LOCKED_EXPERIMENT_FIELDS
        return readonly

    def save_model(self, request, obj, form, change) -> None:
        if change and obj.pk:
            stored = Experiment.objects.get(pk=obj.pk)
            changed = [f for f in LOCKED_EXPERIMENT_FIELDS if getattr(stored, f) != getattr(obj, f)]
            if stored.is_locked and changed:  # read-only in the form; this guards a hand-made POST
                for name in changed:
                    setattr(obj, name, getattr(stored, name))
                self.message_user(request, f"{', '.join(changed)} unchanged: the experiment has started",
                                  level=messages.WARNING)
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None) -> bool:
        """No delete link, view or bulk delete for an experiment that ran (see ``services.experiment_delete``).

        Django's bulk ``delete_selected`` asks this for every selected object and answers 403
        if any is refused, so one running experiment in the selection keeps them all.
        """
        if obj is not None and obj.is_locked:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj) -> None:
        try:
            services.experiment_delete(experiment=obj)
        except services.ExperimentError as error:  # the permission check above already refuses; a race lands here
            raise PermissionDenied(str(error)) from error

    def delete_queryset(self, request, queryset) -> None:
        try:
            with transaction.atomic():
                for experiment in queryset:
                    services.experiment_delete(experiment=experiment)
        except services.ExperimentError as error:
            raise PermissionDenied(str(error)) from error

    def _transition(self, request, queryset, service, verb: str) -> None:
        for experiment in queryset:
            try:
                service(experiment=experiment)
            except services.ExperimentError as error:
                self.message_user(request, f"{experiment.name}: {error}", level=messages.ERROR)
            else:
                self.message_user(request, f"{experiment.name}: {verb}", level=messages.SUCCESS)

    @admin.action(description="Start (or resume) the selected experiments")
    def start_experiments(self, request, queryset) -> None:
        self._transition(request, queryset, services.experiment_start, "running")

    @admin.action(description="Pause the selected experiments")
    def pause_experiments(self, request, queryset) -> None:
        self._transition(request, queryset, services.experiment_pause, "paused")

    @admin.action(description="Stop the selected experiments (final)")
    def stop_experiments(self, request, queryset) -> None:
        self._transition(request, queryset, services.experiment_stop, "stopped")

    @admin.action(description="Archive the selected experiments (stopped ones only)")
    def archive_experiments(self, request, queryset) -> None:
        self._transition(request, queryset, services.experiment_archive, "archived")


from experiments import admin_events  # noqa: E402,F401 - registers the event pipeline's admin
