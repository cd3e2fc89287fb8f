"""Schema moves keep data: API keys, experiments and events written under the old layout (ApiKey in the
experiments app) are all there, and the keys still authenticate, after migrating to the new one."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from abplatform.apikeys.authentication import clear_api_key_cache, verify_api_key
from abplatform.apikeys.models import ApiKey
from experiments.models import EventOutbox, Experiment

OLD_LAYOUT = [("experiments", "0004_hardening"), ("apikeys", None)]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.mark.django_db(transaction=True)
def test_keys_experiments_and_events_of_the_old_layout_survive_the_move_of_api_keys():
    executor = _migrate(OLD_LAYOUT)
    old = executor.loader.project_state([("experiments", "0004_hardening")]).apps
    key = "0a1b2c3d." + uuid.uuid4().hex
    old.get_model("experiments", "ApiKey").objects.create(
        name="old app", scope="analyst", prefix="0a1b2c3d", key_hash=hashlib.sha256(key.encode()).hexdigest())
    experiment = old.get_model("experiments", "Experiment").objects.create(name="old experiment", status="running")
    old.get_model("experiments", "EventOutbox").objects.create(
        kind=3, event_id=uuid.uuid4(), request_id=uuid.uuid4(), experiment_id=experiment.pk, variant_id=1,
        user_key=1, user_id="u", track_id=0, position=0, created_at=timezone.now(), track_ids=[1], scores=[0.5])

    latest = executor.loader.graph.leaf_nodes()
    _migrate(latest)
    assert not MigrationExecutor(connection).migration_plan(latest)  # fully migrated again
    clear_api_key_cache()
    moved = ApiKey.objects.get(prefix="0a1b2c3d")
    assert (moved.name, moved.scope, moved.active) == ("old app", "analyst", True)
    client = verify_api_key(key)
    assert client is not None and client.api_key_id == moved.pk
    assert Experiment.objects.get(pk=experiment.pk).name == "old experiment"
    assert EventOutbox.objects.filter(experiment_id=experiment.pk).count() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM experiments_apikey")
        assert cursor.fetchone()[0] == 1  # the same table, not a copy
