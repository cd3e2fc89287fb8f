"""Schema-driven fuzzing of every /api/v1/ operation against the live server (schemathesis).

The OpenAPI schema served at /api/schema/ is the contract player apps and analysts code
against. schemathesis reads it, generates requests that fit it (positive) and requests that
break it (negative), sends them over real HTTP to the live server on the real database, and
checks each answer: never a 5xx, a status code the schema lists, the content type it lists,
a body that validates against the listed shape, and the headers it marks required.
A failure means the schema lies (fix the schema) or the server breaks (fix the server).

Bounded and deterministic so it fits ``make test``: a fixed number of examples per operation
and mode, ``derandomize`` (the same examples every run), no example database, no shrinking
(every failing example is collected and reported, instead of stopping at the first).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.strategies import SearchStrategy
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from experiments.models import Experiment
from tests.experiments.dashboard_fixtures import seed_experiment
from tests.experiments.serving_fixtures import ServingWorld, build_world
from tests.recommender.embeddings_fixtures import described_catalog, one_torch_thread  # noqa: F401 - fixture

# Examples per operation and generation mode (~600 requests in all, ~15 s of fuzzing on 2 shared cores).
MAX_EXAMPLES = 50
UNAUTHENTICATED_EXAMPLES = 5
SUMMARY_FILE = Path(__file__).resolve().parents[2] / "var" / "log" / "api_fuzz.txt"  # the last run's summary
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@dataclass
class FuzzWorld:
    """Ids and credentials the fuzzing pins where random values would only ever meet a 404 or a 401."""

    serving: ServingWorld
    experiment_ids: list[int]  # running with no events, seeded with users and clicks, and one with no variants
    staff_cookies: dict[str, str]  # a staff user's session
    player_cookies: dict[str, str]  # a signed-in user who is not staff: 403 where staff or a key is needed


@dataclass
class FuzzReport:
    """What was sent and answered, and every failed check grouped by (operation, failure kind, status)."""

    statuses: dict[str, Counter] = field(default_factory=dict)  # operation -> status -> requests
    failures: Counter = field(default_factory=Counter)
    first_example: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def record(self, label: str, status: int) -> None:
        self.statuses.setdefault(label, Counter())[status] += 1

    def record_failure(self, label: str, status: int, failures: list, curl: str) -> None:
        for failure in failures:
            key = (label, f"{failure.code} {failure.title}", status)
            self.failures[key] += 1
            self.first_example.setdefault(key, f"{failure.message[:600]}\n    {curl}")

    @property
    def requests(self) -> int:
        return sum(sum(counter.values()) for counter in self.statuses.values())

    def summary(self) -> str:
        lines = [f"{len(self.statuses)} operations, {self.requests} requests, "
                 f"{sum(self.failures.values())} failed checks"]
        lines += [f"  {label}: {sum(counter.values())} requests, statuses {dict(sorted(counter.items()))}"
                  for label, counter in sorted(self.statuses.items())]
        lines += [f"FAIL x{count} {key[0]} -> {key[2]}: {key[1]}\n    {self.first_example[key]}"
                  for key, count in sorted(self.failures.items())]
        return "\n".join(lines)


@pytest.fixture
def fuzz_world(transactional_db, settings, tmp_path, one_torch_thread) -> FuzzWorld:  # noqa: F811
    """Every operation can answer 200: tracks, two indexed arms, a running and a seeded experiment, an API key,
    and a tiny trained cross-modal model on the crossmusim arm so that text search really searches."""
    from recommender.services.embedding_training import crossmusim_train
    from recommender.services.embeddings import catalog_index, embedding_model_activate

    settings.MODELS_DIR = tmp_path
    serving = build_world(n_tracks=40)
    tracks = described_catalog(24, "SYNTH_features", seed=3)
    run = crossmusim_train(seed=0, steps=10, backbone="SYNTH_features", overrides={"batch_size": 16})
    catalog_index(model=run.model, tracks=tracks)
    embedding_model_activate(model=run.model, arm="crossmusim")
    seeded = seed_experiment(name="fuzz-seeded", users=200, days=3)
    no_variants = Experiment.objects.create(name="fuzz-no-variants")  # its results are a documented 400
    assert serving.experiment is not None
    return FuzzWorld(serving=serving, experiment_ids=[serving.experiment.pk, seeded.experiment.pk, no_variants.pk],
                     staff_cookies=_session_cookies("fuzz-staff", is_staff=True),
                     player_cookies=_session_cookies("fuzz-player", is_staff=False))


def _session_cookies(username: str, is_staff: bool) -> dict[str, str]:
    """The session cookie of a new signed-in user (a real session row, as a browser would hold)."""
    user = get_user_model().objects.create_user(username, password="x" * 12, is_staff=is_staff)
    django_client = Client()
    django_client.force_login(user)
    return {"sessionid": django_client.cookies["sessionid"].value}


@pytest.fixture
def quiet_client_errors():
    """Hundreds of deliberate 4xx would each log a django.request warning (to var/log too); 5xx still log."""
    logger = logging.getLogger("django.request")
    before = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(before)


def _fuzz(operation: APIOperation, strategy: SearchStrategy, report: FuzzReport,
          call: Callable[[schemathesis.Case], schemathesis.Response], max_examples: int) -> None:
    """Run ``max_examples`` cases of ``strategy`` through ``call`` and collect (not raise) every failed check."""

    @hypothesis_settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        response = call(case)
        report.record(operation.label, response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            report.record_failure(operation.label, response.status_code, list(group.exceptions),
                                  case.as_curl_command(headers=dict(response.request.headers)))

    run()


def _probe(operation: APIOperation, report: FuzzReport, response: requests.Response, **case_data: object) -> None:
    """Check one hand-made request (what schemathesis does not generate: forms, oversized bodies) the same way."""
    report.record(operation.label, response.status_code)
    case = operation.Case(**case_data)
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as group:
        report.record_failure(operation.label, response.status_code, list(group.exceptions), "(hand-made probe)")


@pytest.mark.slow
def test_every_api_operation_survives_schema_driven_fuzzing(fuzz_world, live_server, quiet_client_errors, settings):
    """0 server errors and 0 schema violations over every /api/v1/ operation, positive and negative, with an API
    key, without one, with a wrong one, as staff and as a signed-in non-staff user. The rate limits are off here
    (tests/test_ratelimit.py covers them): the fuzzer's hundreds of unauthenticated probes from one address would
    otherwise spend the address's budget and turn the rest of the run into 429s."""
    settings.RATE_LIMIT_KEY_PER_S = settings.RATE_LIMIT_ADDR_PER_S = settings.RATE_LIMIT_AUTH_FAIL_PER_S = 0
    started = time.perf_counter()
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/").include(path_regex="^/api/v1/")
    report = FuzzReport()
    base = live_server.url
    key = fuzz_world.serving.headers
    labels = []
    with requests.Session() as session:
        # No keep-alive: a live-server thread waiting on an idle connection holds its database session past the
        # test, and the test database cannot be dropped at the end of the run.
        session.headers["Connection"] = "close"

        def as_client(headers: dict[str, str] | None = None,
                      cookies: dict[str, str] | None = None) -> Callable[[schemathesis.Case], schemathesis.Response]:
            return lambda case: case.call(base_url=base, session=session, headers=headers, cookies=cookies,
                                          timeout=30)

        for result in schema.get_all_operations():
            operation = result.ok()
            labels.append(operation.label)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, operation.as_strategy(generation_mode=mode), report, as_client(key), MAX_EXAMPLES)
            for wrong in ({"Authorization": ""}, {"Authorization": "Api-Key unknown.key"}):  # 401 + WWW-Authenticate
                _fuzz(operation, operation.as_strategy(), report, as_client(wrong), UNAUTHENTICATED_EXAMPLES)
            if operation.method.upper() == "GET" and operation.path != "/api/v1/recommendations":  # 403
                _fuzz(operation, operation.as_strategy(), report,
                      as_client({"Authorization": ""}, fuzz_world.player_cookies), UNAUTHENTICATED_EXAMPLES)
            if operation.path == "/api/v1/recommendations":  # around a real seed track: the 200 path, fuzzed
                seed = fuzz_world.serving.track_ids()[0]
                _fuzz(operation, operation.as_strategy(query={"seed_track": seed}), report, as_client(key),
                      MAX_EXAMPLES)
            if operation.path == "/api/v1/experiments/{id}/results":  # real experiments, with a key and as staff
                for pk in fuzz_world.experiment_ids:
                    strategy = operation.as_strategy(path_parameters={"id": pk})
                    _fuzz(operation, strategy, report, as_client(key), 1)
                    _fuzz(operation, strategy, report, as_client({"Authorization": ""}, fuzz_world.staff_cookies), 1)
            if operation.path == "/api/v1/events":  # bodies the schema says are refused: a form (415), too big (413)
                url = f"{base}/api/v1/events"
                _probe(operation, report, requests.post(url, data={"events": "x"}, headers=key, timeout=30),
                       body={"events": "x"}, media_type="application/x-www-form-urlencoded")
                too_big = b'{"events": [' + b" " * settings.API_MAX_BODY_BYTES + b"]}"
                _probe(operation, report, requests.post(url, data=too_big, timeout=30,
                                                        headers={**key, "Content-Type": "application/json"}),
                       body={"events": []}, media_type="application/json")
    elapsed = time.perf_counter() - started
    summary = f"schemathesis {schemathesis.__version__}, {elapsed:.1f} s: {report.summary()}"
    print(f"\n{summary}")
    SUMMARY_FILE.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY_FILE.write_text(summary + "\n")
    assert sorted(labels) == ["GET /api/v1/experiments/{id}/results", "GET /api/v1/recommendations",
                              "GET /api/v1/search", "GET /api/v1/tracks", "POST /api/v1/events"]
    # every documented kind of answer was really produced and checked, not only the errors
    seen = {label: set(counter) for label, counter in report.statuses.items()}
    assert {200, 400, 401, 404} <= seen["GET /api/v1/recommendations"], seen
    assert {202, 400, 401, 413, 415} <= seen["POST /api/v1/events"], seen
    assert {200, 400, 401, 403} <= seen["GET /api/v1/search"], seen
    assert {200, 401, 403, 404} <= seen["GET /api/v1/tracks"], seen
    assert {200, 400, 401, 403, 404} <= seen["GET /api/v1/experiments/{id}/results"], seen
    assert not report.failures, summary


def test_more_query_fields_than_django_parses_is_a_json_400(transactional_db, live_server, quiet_client_errors):
    """More than DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) query fields: Django refuses to parse the query, on every
    operation, before any parameter is validated. The client sent a bad request; it is not a server error."""
    world = build_world(n_tracks=5)
    junk = "&".join(f"f{i}=1" for i in range(1001))
    answers = [requests.get(f"{live_server.url}{path}?{junk}", headers={**world.headers, "Connection": "close"},
                            timeout=30)
               for path in ("/api/v1/recommendations", "/api/v1/tracks", "/api/v1/search")]
    assert [(a.status_code, a.headers["Content-Type"]) for a in answers] == [(400, "application/json")] * 3, \
        [a.text for a in answers]
