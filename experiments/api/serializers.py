"""Input validation and output shapes of the serving API (also the OpenAPI schema)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rest_framework import serializers

from abplatform.api.validation import text_problem
from experiments.events.plays import MAX_LISTENED_SECONDS

MAX_K = 100
MAX_EXCLUDE = 500
MAX_EVENTS = 1000
MAX_USER_LEN = 200
MAX_INT = 2**63 - 1
EXCLUDE_ID_DIGITS = 18  # an excluded id never overflows a bigint, whatever its digits
MAX_EXCLUDE_ID = 10**EXCLUDE_ID_DIGITS - 1


MAX_PLACEMENT_LEN = 50
PLACEMENT_INVALID = "placement must be a placement key: letters, digits, '_' or '-', at most 50 characters"
EXCLUDE_INVALID = "exclude must be a comma-separated list of track ids"
EXCLUDE_TOO_MANY = f"exclude takes at most {MAX_EXCLUDE} ids"


@dataclass(frozen=True)
class RecommendationQuery:
    user: str
    seed_track: int
    k: int
    exclude: list[int]
    placement: str = "track_page"


def _positive_int(text: str, name: str, errors: dict, maximum: int = MAX_INT) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        errors[name] = [f"{name} must be a positive integer"]
        return 0
    value = int(text)
    if not 1 <= value <= maximum:
        errors[name] = [f"{name} must be between 1 and {maximum}"]
    return value


def parse_recommendation_query(query: Mapping[str, str]) -> RecommendationQuery | dict[str, list[str]]:
    """Validate ``user``, ``seed_track``, ``k`` (default 10), ``exclude`` and ``placement`` (its form; whether it
    exists is the serving configuration's answer); the query, or errors by field.

    Hand-written rather than a DRF serializer: this runs on every recommendation, and a
    serializer's per-field machinery costs more than the assignment and the KNN round trip's
    Python side together. The OpenAPI parameters are declared on the view."""
    errors: dict[str, list[str]] = {}
    user = query.get("user")
    if user is None:
        errors["user"] = ["This field is required."]
    elif not user.strip():
        errors["user"] = ["user must not be blank"]
    elif len(user) > MAX_USER_LEN:
        errors["user"] = [f"user takes at most {MAX_USER_LEN} characters"]
    elif (problem := text_problem(user, "user")) is not None:
        errors["user"] = [problem]
    seed = query.get("seed_track")
    seed_track = 0
    if seed is None:
        errors["seed_track"] = ["This field is required."]
    else:
        seed_track = _positive_int(seed, "seed_track", errors)
    k = _positive_int(query["k"], "k", errors, MAX_K) if query.get("k") not in (None, "") else 10
    exclude: list[int] = []
    raw_exclude = query.get("exclude")
    if raw_exclude:
        parts = [part.strip() for part in raw_exclude.split(",") if part.strip()]
        if len(parts) > MAX_EXCLUDE:
            errors["exclude"] = [EXCLUDE_TOO_MANY]
        elif not all(part.isascii() and part.isdigit() and len(part) <= EXCLUDE_ID_DIGITS for part in parts):
            errors["exclude"] = [EXCLUDE_INVALID]
        else:
            exclude = [int(part) for part in parts]
    placement = query.get("placement") or "track_page"
    if len(placement) > MAX_PLACEMENT_LEN or not placement.isascii() or not placement.replace("_", "").replace(
            "-", "").isalnum():
        errors["placement"] = [PLACEMENT_INVALID]
    if errors:
        return errors
    return RecommendationQuery(user=user, seed_track=seed_track, k=k, exclude=exclude, placement=placement)


class RecommendationItemSerializer(serializers.Serializer):
    track = serializers.IntegerField()
    position = serializers.IntegerField(help_text="1-based")
    score = serializers.FloatField(help_text="Cosine similarity to the seed")
    title = serializers.CharField()
    artist = serializers.CharField()


class RecommendationResponseSerializer(serializers.Serializer):
    request_id = serializers.UUIDField(help_text="Send it back with each click")
    experiment = serializers.IntegerField(allow_null=True, help_text="null: no experiment, or user outside its traffic")
    experiment_name = serializers.CharField(allow_null=True)
    variant = serializers.CharField(allow_null=True)
    placement = serializers.CharField(help_text="The placement served (the request's, default track_page)")
    model = serializers.CharField(help_text="Embedding model that served, 'name vN'")
    model_id = serializers.IntegerField()
    items = RecommendationItemSerializer(many=True)


PLAY_ONLY = ("listened_seconds", "skipped")


class PlayerEventSerializer(serializers.Serializer):
    """A click, or a play (a listen that followed a click on the same item: same request, position, track)."""

    event_id = serializers.UUIDField(help_text="Client-made id; a repeat is acknowledged and counted once")
    type = serializers.ChoiceField(choices=["click", "play"])
    request_id = serializers.UUIDField()
    track = serializers.IntegerField(min_value=1, max_value=MAX_INT)
    position = serializers.IntegerField(min_value=1, max_value=MAX_K)
    client_time = serializers.DateTimeField(required=False, allow_null=True, default=None)
    listened_seconds = serializers.FloatField(
        min_value=0, max_value=MAX_LISTENED_SECONDS, required=False,
        help_text=f"play only (required): seconds listened, 0-{MAX_LISTENED_SECONDS}; >= 30 s is a long listen")
    skipped = serializers.BooleanField(required=False, help_text="play only (required): the listen ended in a skip")

    def validate(self, attrs: dict) -> dict:
        if attrs["type"] == "play":
            missing = {name: ["This field is required for a play."] for name in PLAY_ONLY if name not in attrs}
            if missing:
                raise serializers.ValidationError(missing)
        else:
            extra = {name: ["Only a play carries this field."] for name in PLAY_ONLY if name in attrs}
            if extra:
                raise serializers.ValidationError(extra)
        return attrs


class EventBatchSerializer(serializers.Serializer):
    # A ListField (not many=True) so that the OpenAPI schema states minItems/maxItems; errors come keyed by index.
    events = serializers.ListField(child=PlayerEventSerializer(), allow_empty=False, min_length=1,
                                   max_length=MAX_EVENTS, help_text=f"1-{MAX_EVENTS} clicks and plays")


class RejectedEventSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    reason = serializers.CharField()


class EventBatchResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="New events, each counted once")
    duplicates = serializers.IntegerField(help_text="Event ids already accepted: acknowledged, not counted again")
    rejected = RejectedEventSerializer(many=True, help_text="Never counted")
