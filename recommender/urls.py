"""REST API routes of the recommender app (mounted under /api/v1/)."""

urlpatterns: list = []
