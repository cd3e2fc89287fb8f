"""Admin of the event pipeline's exceptions: quarantined outbox rows, with a replay action."""

from __future__ import annotations

from django.contrib import admin, messages

from experiments.events.quarantine import replay_quarantined
from experiments.models import EventQuarantine


@admin.register(EventQuarantine)
class EventQuarantineAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "event_id", "experiment_id", "user_id", "error", "quarantined_at")
    list_filter = ("kind",)
    search_fields = ("event_id", "request_id", "user_id", "error")
    actions = ["replay"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # an accepted event is never thrown away; replay it, or fix the cause and replay

    @admin.action(description="Replay: move the selected rows back into the outbox")
    def replay(self, request, queryset) -> None:
        count = replay_quarantined(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} row(s) moved back into the outbox; the relay sends them again",
                          level=messages.SUCCESS)
