"""The serving ceiling: the same gunicorn and the same KNN as the recommendation endpoint, nothing else.

``bench/serve_load.py --ceiling`` serves this under ``abplatform/gunicorn_conf.py`` in the
same minutes as the full endpoint, so each run reports our request beside what this VM
can do at that time (its speed swings by a third between runs, FACTS.md's figures are
from a faster day). ``GET /knn?seed_track=&k=`` runs ``vector_search.nearest_to_track`` on
the baseline arm of the running experiment: no API key, no assignment, no recording.

    gunicorn ceiling_app:application -c abplatform/gunicorn_conf.py --chdir bench
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from abplatform.wsgi import PLAYER_API_MIDDLEWARE, SubsetMiddlewareHandler  # noqa: E402
from experiments import selectors  # noqa: E402
from recommender import vector_search  # noqa: E402


def bare_knn(request: HttpRequest) -> HttpResponse:
    arm = selectors.serving_config().experiment.variants["control"].arm
    items = vector_search.nearest_to_track(arm, int(request.GET["seed_track"]), int(request.GET.get("k", 10)))
    return HttpResponse(json.dumps({"items": [{"track": n.track_id, "score": round(n.score, 6)} for n in items]}),
                        content_type="application/json")


urlpatterns = [path("knn", bare_knn)]
settings.ROOT_URLCONF = __name__  # read at the first request, after this module is complete
# the player API's lean middleware chain, so the two differ only by what the endpoint itself does
application = SubsetMiddlewareHandler(PLAYER_API_MIDDLEWARE)
