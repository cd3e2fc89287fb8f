"""REST API routes of the experiments app (mounted under /api/v1/)."""

from django.urls import path

from experiments.api import views

urlpatterns = [
    path("recommendations", views.RecommendationView.as_view(), name="recommendations"),
    path("events", views.EventBatchView.as_view(), name="events"),
]
