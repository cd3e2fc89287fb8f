"""Input validation and output shapes of the serving API (also the OpenAPI schema)."""

from __future__ import annotations

from rest_framework import serializers

MAX_K = 100
MAX_EXCLUDE = 500
MAX_EVENTS = 1000
MAX_USER_LEN = 200
MAX_INT = 2**63 - 1


class ExcludeField(serializers.Field):
    """``exclude=1,2,3``: comma-separated track ids."""

    default_error_messages = {
        "invalid": "exclude must be a comma-separated list of track ids",
        "too_many": f"exclude takes at most {MAX_EXCLUDE} ids",
    }

    def to_internal_value(self, data) -> list[int]:
        if not isinstance(data, str):
            self.fail("invalid")
        parts = [part.strip() for part in data.split(",") if part.strip()]
        if len(parts) > MAX_EXCLUDE:
            self.fail("too_many")
        if not all(part.isascii() and part.isdigit() and len(part) < 19 for part in parts):
            self.fail("invalid")
        return [int(part) for part in parts]

    def to_representation(self, value) -> str:
        return ",".join(map(str, value))


class RecommendationQuerySerializer(serializers.Serializer):
    user = serializers.CharField(max_length=MAX_USER_LEN, trim_whitespace=False,
                                 help_text="The player's stable user id (any string)")
    seed_track = serializers.IntegerField(min_value=1, max_value=MAX_INT, help_text="Track to find neighbours of")
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, default=10)
    exclude = ExcludeField(required=False, default=list, help_text="Comma-separated track ids to leave out")

    def validate_user(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("user must not be blank")
        if any(ord(ch) < 32 for ch in value):
            raise serializers.ValidationError("user must not contain control characters")
        return value


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
    model = serializers.CharField(help_text="Embedding model that served, 'name vN'")
    model_id = serializers.IntegerField()
    items = RecommendationItemSerializer(many=True)


class ClickEventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField(help_text="Client-made id; a repeat is acknowledged and counted once")
    type = serializers.ChoiceField(choices=["click"])
    request_id = serializers.UUIDField()
    track = serializers.IntegerField(min_value=1, max_value=MAX_INT)
    position = serializers.IntegerField(min_value=1, max_value=MAX_K)
    client_time = serializers.DateTimeField(required=False, allow_null=True, default=None)


class EventBatchSerializer(serializers.Serializer):
    events = ClickEventSerializer(many=True, allow_empty=False, max_length=MAX_EVENTS)


class RejectedEventSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    reason = serializers.CharField()


class EventBatchResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="New events, each counted once")
    duplicates = serializers.IntegerField(help_text="Event ids already accepted: acknowledged, not counted again")
    rejected = RejectedEventSerializer(many=True, help_text="Never counted")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(required=False)
