"""The simulator's HTTP client against the real catalog API (live server, real API key)."""

from __future__ import annotations

import pytest

from abplatform.apikeys.services import api_key_create
from experiments.simulation import ApiError, PlatformClient
from experiments.simulation.runner import load_catalog
from tests.experiments.simulation_fixtures import label_catalog


@pytest.mark.django_db(transaction=True)
def test_catalog_is_read_page_by_page_with_the_labels(live_server):
    tracks = label_catalog(count=23)
    _, key = api_key_create(name="simulator client test")
    with PlatformClient(live_server.url, key) as client:
        catalog, rows = load_catalog(client, page_size=5)  # 5 pages, the last one short
    assert rows == 23 and [t.id for t in catalog.tracks] == sorted(t.pk for t in tracks)
    first = tracks[0]
    assert catalog.by_id[first.pk].style == first.labels["style"]
    assert catalog.by_id[first.pk].ensemble == first.labels["ensemble"]
    assert catalog.by_id[first.pk].tempo_bpm == float(first.labels["tempo_bpm"])
    assert set(catalog.styles) == {"reel", "jig", "waltz", "chorale"}


@pytest.mark.django_db(transaction=True)
def test_a_wrong_key_is_a_clear_error_not_a_retry_loop(live_server):
    label_catalog(count=3)
    with PlatformClient(live_server.url, "deadbeef.not-a-key", retries=3, backoff_s=0.5) as client:
        with pytest.raises(ApiError) as failure:
            load_catalog(client)
        assert failure.value.status in (401, 403) and client.retried == 0
