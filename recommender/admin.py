from django.contrib import admin

from recommender.models import DatasetSplit, Description, DescriptionFetch, EmbeddingModel, Track


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
    list_display = ("id", "track", "source", "perspective", "kept", "score", "reason", "short_text", "origin")
    list_filter = ("source", "kept", "reason", "perspective")
    search_fields = ("text", "origin", "track__title")
    list_select_related = ("track",)
    raw_id_fields = ("track",)
    readonly_fields = ("created_at", "text_hash")

    @admin.display(description="text")
    def short_text(self, obj: Description) -> str:
        return obj.text if len(obj.text) <= 90 else obj.text[:87] + "..."


@admin.register(DescriptionFetch)
class DescriptionFetchAdmin(admin.ModelAdmin):
    list_display = ("track", "source", "origin", "ok", "error", "found", "attempts", "updated_at")
    list_filter = ("source", "ok", "error")
    search_fields = ("origin", "track__title")
    list_select_related = ("track",)
    raw_id_fields = ("track",)


@admin.register(EmbeddingModel)
class EmbeddingModelAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "kind", "tower", "dim", "created_at", "indexed_at")
    list_filter = ("kind",)
