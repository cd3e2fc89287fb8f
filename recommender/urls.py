"""REST API routes of the recommender app (mounted under /api/v1/)."""

from django.urls import path

from recommender import views

urlpatterns = [
    path("tracks", views.TrackListView.as_view(), name="track-list"),
    path("search", views.TextSearchView.as_view(), name="text-search"),
]
