"""Staff dashboard routes (mounted at the site root), and the results JSON under the API prefix.

The JSON route lives here rather than in experiments/urls.py so the serving API module
stays the serving helper's; the full path keeps it under /api/v1/.
"""

from django.urls import path

from experiments.dashboard import api, views

urlpatterns = [
    path("experiments/", views.experiment_list, name="experiment-list"),
    path("experiments/<int:pk>/", views.experiment_detail, name="experiment-detail"),
    path("experiments/<int:pk>/variants.csv", views.experiment_csv, name="experiment-csv"),
    path("api/v1/experiments/<int:pk>/results", api.ExperimentResultsView.as_view(), name="experiment-results"),
]
