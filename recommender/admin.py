from django.contrib import admin

from recommender.models import DatasetSplit, Description, EmbeddingModel, Track


@admin.register(Track)
class TrackAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "artist", "album", "duration_s")
    search_fields = ("title", "artist", "album")


@admin.register(DatasetSplit)
class DatasetSplitAdmin(admin.ModelAdmin):
    list_display = ("name", "track", "part")
    list_filter = ("name", "part")


@admin.register(Description)
class DescriptionAdmin(admin.ModelAdmin):
    list_display = ("track", "source", "perspective", "kept", "score", "reason")
    list_filter = ("source", "kept", "reason")
    search_fields = ("text",)


@admin.register(EmbeddingModel)
class EmbeddingModelAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "kind", "tower", "dim", "created_at", "indexed_at")
    list_filter = ("kind",)
