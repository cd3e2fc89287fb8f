"""Staff admin: placements (default model, layer, holdout), experiments with inline variants, their share of the
placement's layer and start/pause/stop/archive/ship actions, and the launches record.

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
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from experiments import lifecycle, services
from experiments.layers import BUCKETS, buckets_for_share
from experiments.models import Experiment, Launch, Placement, Variant
from experiments.plan import PlanError, plan_of, planned_users_from_power
from experiments.stats.metrics import METRICS

PLAN_FIELDS = ("primary_metric", "secondary_metrics", "guardrails", "planned_users_per_arm", "winsor_percentile",
               "pre_period_days")
LOCKED_EXPERIMENT_FIELDS = ("kind", "salt", "traffic_fraction", "placement", *PLAN_FIELDS)


def _share(buckets: int) -> str:
    return f"{buckets / BUCKETS:.2%} ({buckets} buckets)"


class ExperimentForm(forms.ModelForm):
    """The plan's fields validated against the metric registry (experiments/plan.py), each error on its field; the
    power planner (a baseline CTR and a relative MDE fill an empty planned size); and a draft whose share exceeds the
    free buckets of its placement's layer is refused (start refuses it too)."""

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
        stored_kind = Experiment.objects.filter(pk=self.instance.pk).values_list("kind", flat=True).first()
        if cleaned.get("kind") == Experiment.Kind.HOLDOUT and stored_kind != Experiment.Kind.HOLDOUT:
            self.add_error("kind", "a holdout is started from the placements list (action 'Start a holdout'), "
                                   "which gives it its held and launched arms")
        placement, share = cleaned.get("placement"), cleaned.get("traffic_fraction")
        if placement is None or share is None or (self.instance.pk and self.instance.is_locked):
            return cleaned
        wanted, free = buckets_for_share(share), services.layer_free_buckets(placement.key)
        if wanted == 0:
            self.add_error("traffic_fraction", "a share of 0 reaches nobody")
        elif wanted > free:
            self.add_error("traffic_fraction", (
                f"placement {placement.key!r} has {_share(free)} free; this experiment asks for {_share(wanted)}. "
                "Lower its traffic share, or stop or shrink another experiment of this placement first."))
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
    form = ExperimentForm
    list_display = ("name", "placement", "kind", "status", "share", "buckets", "scheduled_start_at",
                    "scheduled_stop_at", "started_at", "stopped_at")
    list_filter = (ExperimentStatusFilter, "placement", "kind")
    search_fields = ("name", "hypothesis")
    inlines = [VariantInline]
    actions = ["start_experiments", "pause_experiments", "stop_experiments", "archive_experiments", "ship_winner"]
    fieldsets = (
        (None, {"fields": ("name", "hypothesis", "placement", "layer", "kind", "status", "traffic_fraction", "buckets",
                           "scheduled_start_at", "scheduled_stop_at", "salt", "started_at", "stopped_at")}),
        ("Metric plan (locked once started)", {"fields": (*PLAN_FIELDS, "plan_baseline_rate", "plan_mde")}),
    )

    def get_fieldsets(self, request, obj=None):
        if obj is not None and obj.is_locked:  # the planner fills a draft's planned size only
            return tuple((name, {"fields": tuple(f for f in opts["fields"] if not f.startswith("plan_"))})
                         for name, opts in self.fieldsets)
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        readonly = ["status", "started_at", "stopped_at", "layer", "buckets"]
        if obj is not None and obj.is_locked:
            readonly += LOCKED_EXPERIMENT_FIELDS
        elif obj is not None and obj.kind == Experiment.Kind.HOLDOUT:  # its arms come from the holdout action
            readonly.append("kind")
        return readonly

    @admin.display(description="traffic share")
    def share(self, obj: Experiment) -> str:
        return _share(buckets_for_share(float(obj.traffic_fraction)))

    @admin.display(description="buckets held")
    def buckets(self, obj: Experiment) -> str:
        return services.describe_buckets(obj) if obj.pk else "none (taken at start)"

    @admin.display(description="placement's layer")
    def layer(self, obj: Experiment) -> str:
        """The free buckets of every placement (the form's placement may change before saving)."""
        return "; ".join(f"{p.key}: {_share(services.layer_free_buckets(p.key))} free"
                         for p in Placement.objects.all())

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

    @admin.action(description="Ship a variant: its model becomes the placement's default (stopped ones only)")
    def ship_winner(self, request, queryset):
        """An intermediate page: the verdict and a choice of variant (the winner preselected), then ship."""
        from experiments.analysis import experiment_results

        if queryset.count() != 1:
            self.message_user(request, "ship one experiment at a time", level=messages.ERROR)
            return None
        experiment = queryset.get()
        if experiment.status not in (Experiment.Status.STOPPED, Experiment.Status.ARCHIVED):
            self.message_user(request, f"{experiment.name}: only a stopped experiment ships; it is "
                                       f"{experiment.status}", level=messages.ERROR)
            return None
        results = experiment_results(experiment)
        winners = [c.key for c in results.comparisons if c.outcome == "win"]
        if request.POST.get("variant"):
            try:
                launch = lifecycle.experiment_ship(experiment=experiment, variant_key=request.POST["variant"],
                                                  by=request.user.get_username(), verdict=results.verdict)
            except services.ExperimentError as error:
                self.message_user(request, f"{experiment.name}: {error}", level=messages.ERROR)
            else:
                self.message_user(request, f"{experiment.name}: {launch.model} now serves {launch.placement_id} "
                                           f"(was {launch.previous_model or 'nothing'})", level=messages.SUCCESS)
            return None
        return TemplateResponse(request, "admin/experiments/ship_winner.html", {
            **self.admin_site.each_context(request), "title": f"Ship a variant of {experiment.name}",
            "experiment": experiment, "verdict": results.verdict, "winner": winners[0] if len(winners) == 1 else "",
            "variants": list(experiment.variants.select_related("embedding_model").order_by("-is_control", "id")),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "opts": self.model._meta,
        })


class PlacementForm(forms.ModelForm):
    class Meta:
        model = Placement
        fields = ("key", "name", "default_model")


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):
    """A changed default model is recorded as a launch (by hand); the layer salt never changes."""

    form = PlacementForm
    list_display = ("key", "name", "default_model", "free", "running")
    actions = ["start_holdout"]
    readonly_fields = ("layer_salt", "free", "running")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "key") if obj is not None else self.readonly_fields

    @admin.display(description="free buckets")
    def free(self, obj: Placement) -> str:
        return _share(services.layer_free_buckets(obj.key))

    @admin.display(description="running experiments (share)")
    def running(self, obj: Placement) -> str:
        live = obj.experiments.filter(status__in=[Experiment.Status.RUNNING, Experiment.Status.PAUSED])
        return ", ".join(f"{e.name} ({e.kind}, {e.status}, {e.traffic_fraction:.0%})" for e in live) or "none"

    @admin.action(description="Start a holdout: keep a share of users on today's default model")
    def start_holdout(self, request, queryset):
        """An intermediate page asks for the share (default 5 %), then ``lifecycle.holdout_start`` per placement."""
        share = request.POST.get("share")
        if share is None:
            return TemplateResponse(request, "admin/experiments/start_holdout.html", {
                **self.admin_site.each_context(request), "title": "Start a holdout", "placements": list(queryset),
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "opts": self.model._meta})
        try:
            fraction = float(share) / 100
        except ValueError:
            self.message_user(request, f"the share must be a number of percent, got {share!r}", level=messages.ERROR)
            return None
        for placement in queryset:
            try:
                holdout = lifecycle.holdout_start(placement=placement.key, share=fraction)
            except services.ExperimentError as error:
                self.message_user(request, f"{placement.key}: {error}", level=messages.ERROR)
            else:
                self.message_user(request, f"{placement.key}: holdout {holdout.name!r} running ({fraction:.1%} held, "
                                           f"{fraction:.1%} measured)", level=messages.SUCCESS)
        return None

    def save_model(self, request, obj, form, change) -> None:
        model = form.cleaned_data.get("default_model")
        if change and "default_model" in form.changed_data and model is not None:
            obj.default_model = Placement.objects.get(pk=obj.pk).default_model  # the service records the change
            super().save_model(request, obj, form, change)
            try:
                lifecycle.placement_set_default(placement=obj, model=model, by=request.user.get_username())
            except services.ExperimentError as error:
                self.message_user(request, str(error), level=messages.ERROR)
            return
        super().save_model(request, obj, form, change)
        services.clear_serving_cache()


@admin.register(Launch)
class LaunchAdmin(admin.ModelAdmin):
    """The record of every default-model change: read-only."""

    list_display = ("launched_at", "placement", "model", "previous_model", "experiment_link", "variant_key",
                    "launched_by", "verdict")
    list_filter = ("placement",)

    @admin.display(description="experiment")
    def experiment_link(self, obj: Launch):
        if obj.experiment_id is None:
            return "-"
        return format_html('<a href="{}">{}</a>', reverse("experiment-detail", args=[obj.experiment_id]),
                           obj.experiment.name)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


from experiments import admin_events  # noqa: E402,F401 - registers the event pipeline's admin
