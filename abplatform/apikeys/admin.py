"""Admin of API keys: create (the key is shown once), scope, deactivate (refused everywhere within a second)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from abplatform.apikeys.authentication import CACHE_TTL_S, clear_api_key_cache
from abplatform.apikeys.models import ApiKey
from abplatform.apikeys.services import api_key_create


class ApiKeyCreateForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("name", "scope")
        help_texts = {"scope": "player: recommendations, events, tracks and search (what ships inside an app); "
                               "analyst: those and experiment results"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scope"].required = False  # a form posted without it (scripts, old bookmarks) gets a player key

    def clean_scope(self) -> str:
        return self.cleaned_data.get("scope") or ApiKey.Scope.PLAYER


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here (shown once) and deactivated; the scope is chosen at creation and fixed after."""

    list_display = ("name", "scope", "prefix", "active", "created_at")
    list_filter = ("active", "scope")
    search_fields = ("name", "prefix")
    actions = ["deactivate_keys"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("name", "scope") if obj is None else ("name", "scope", "prefix", "active", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("scope", "prefix", "created_at")

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            clear_api_key_cache()  # this process at once; every other one within CACHE_TTL_S
            return
        created, key = api_key_create(name=obj.name, scope=obj.scope)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = created.pk, created.prefix, created.key_hash, \
            created.created_at
        obj._state.adding = False
        self.message_user(request, f"{created.scope} API key for {created.name!r} (shown once, store it now): {key}",
                          level=messages.WARNING)

    @admin.action(description="Deactivate the selected keys")
    def deactivate_keys(self, request, queryset) -> None:
        count = queryset.update(active=False)
        # This process at once; every other one within CACHE_TTL_S. (Under ATOMIC_REQUESTS a request racing this
        # one could cache the still-committed row again: the TTL bounds that too.)
        clear_api_key_cache()
        self.message_user(request, f"{count} key(s) deactivated (refused by every server process within "
                                   f"{CACHE_TTL_S:g} s)")
