"""Request and response shapes of the recommender REST API (catalog pages, text search)."""

from rest_framework import serializers

from abplatform.api.validation import text_problem
from recommender.models import Track

MAX_SEARCH_K = 100
MAX_QUERY_CHARS = 500


class TrackSerializer(serializers.ModelSerializer):
    class Meta:
        model = Track
        fields = ["id", "title", "artist", "album", "duration_s", "labels"]


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(max_length=MAX_QUERY_CHARS, trim_whitespace=True,
                              help_text="Free text describing the music, e.g. 'a lively fiddle reel'")
    k = serializers.IntegerField(min_value=1, max_value=MAX_SEARCH_K, default=10,
                                 help_text=f"Number of tracks to return (1-{MAX_SEARCH_K})")

    def validate_q(self, value: str) -> str:
        problem = text_problem(value, "q")
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value


class ModelRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.IntegerField()


class SearchItemSerializer(serializers.Serializer):
    track = serializers.IntegerField(source="track.id")
    position = serializers.IntegerField(help_text="1-based rank")
    score = serializers.FloatField(help_text="Cosine similarity between the query and the track")
    title = serializers.CharField(source="track.title")
    artist = serializers.CharField(source="track.artist")
    album = serializers.CharField(source="track.album")


class SearchResponseSerializer(serializers.Serializer):
    query = serializers.CharField()
    model = ModelRefSerializer()
    items = SearchItemSerializer(many=True)
