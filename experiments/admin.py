"""Staff admin: experiments with inline variants and start/pause/stop actions, and API keys.

A started experiment's variants, weights, salt and traffic fraction are read-only here,
and the services refuse the change too (``services.ensure_unlocked``).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from experiments import services
from experiments.models import ApiKey, Experiment, Variant

LOCKED_EXPERIMENT_FIELDS = ("salt", "traffic_fraction")


class VariantInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if self.instance.pk and self.instance.is_locked and self.has_changed():
            raise ValidationError("this experiment has started: its variants and weights are locked")
        live = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if sum(bool(f.cleaned_data.get("is_control")) for f in live) > 1:
            raise ValidationError("at most one variant can be the control")


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


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "traffic_fraction", "started_at", "stopped_at", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "hypothesis")
    inlines = [VariantInline]
    actions = ["start_experiments", "pause_experiments", "stop_experiments"]
    fields = ("name", "hypothesis", "status", "traffic_fraction", "salt", "primary_metric", "started_at",
              "stopped_at")

    def get_readonly_fields(self, request, obj=None):
        readonly = ["status", "started_at", "stopped_at", "primary_metric"]
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


class ApiKeyCreateForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("name",)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "prefix")
    actions = ["deactivate_keys"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("name",) if obj is None else ("name", "prefix", "active", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("prefix", "created_at")

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created, key = services.api_key_create(name=obj.name)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = created.pk, created.prefix, created.key_hash, \
            created.created_at
        obj._state.adding = False
        self.message_user(request, f"API key for {created.name!r} (shown once, store it now): {key}",
                          level=messages.WARNING)

    @admin.action(description="Deactivate the selected keys")
    def deactivate_keys(self, request, queryset) -> None:
        count = queryset.update(active=False)
        self.message_user(request, f"{count} key(s) deactivated (effective within 30 s)")

from experiments import admin_events  # noqa: E402,F401 - registers the event pipeline's admin
