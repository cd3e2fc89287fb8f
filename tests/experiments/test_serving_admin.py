"""Experiment lifecycle (services, admin, commands): locked variants, no restart, no delete once run, archive,
staff-only admin."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from abplatform.apikeys.authentication import verify_api_key
from abplatform.apikeys.models import ApiKey
from experiments.models import Experiment, Variant
from experiments.services import (
    ExperimentError,
    ExperimentLockedError,
    VariantSpec,
    experiment_archive,
    experiment_create,
    experiment_delete,
    experiment_pause,
    experiment_start,
    experiment_stop,
    variants_set,
)
from tests.experiments.serving_fixtures import build_world

CHANGELIST = "/admin/experiments/experiment/"


@pytest.fixture
def world(db):
    return build_world(start_experiment=False)


def draft(world, name="draft", share=0.5):
    return experiment_create(name=name, traffic_fraction=share, variants=[VariantSpec("control", world.baseline.pk, 50),
                                                  VariantSpec("treatment", world.treatment.pk, 50)])


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("boss", password="x" * 12, is_staff=True,
                                                             is_superuser=True))
    return client


def test_lifecycle_rules(world):
    experiment = draft(world)
    assert experiment.variants.get(is_control=True).key == "control"
    variants_set(experiment=experiment, variants=[VariantSpec("a", world.baseline.pk, 30),
                                                  VariantSpec("b", world.treatment.pk, 70)])
    assert sorted(experiment.variants.values_list("key", "weight")) == [("a", 30), ("b", 70)]
    experiment = experiment_start(experiment=experiment)
    assert experiment.status == "running" and experiment.started_at is not None
    with pytest.raises(ExperimentLockedError):
        variants_set(experiment=experiment, variants=[VariantSpec("a", world.baseline.pk, 50),
                                                      VariantSpec("b", world.treatment.pk, 50)])
    other = draft(world, "other", share=0.6)  # half the layer is taken
    with pytest.raises(ExperimentError, match="5000 free buckets"):
        experiment_start(experiment=other)
    experiment = experiment_pause(experiment=experiment)
    with pytest.raises(ExperimentLockedError):  # paused is still locked
        variants_set(experiment=experiment, variants=[VariantSpec("a", world.baseline.pk, 1),
                                                      VariantSpec("b", world.treatment.pk, 1)])
    experiment = experiment_start(experiment=experiment)  # resume keeps the first start time
    experiment = experiment_stop(experiment=experiment)
    assert experiment.status == "stopped" and experiment.stopped_at is not None
    with pytest.raises(ExperimentError, match="cannot restart"):
        experiment_start(experiment=experiment)
    assert sorted(Variant.objects.filter(experiment=experiment).values_list("weight", flat=True)) == [30, 70]


def test_bad_variant_sets_are_refused(world):
    with pytest.raises(ExperimentError):
        experiment_create(name="one", variants=[VariantSpec("only", world.baseline.pk)])
    with pytest.raises(ExperimentError):
        experiment_create(name="dup", variants=[VariantSpec("a", world.baseline.pk),
                                                VariantSpec("a", world.baseline.pk)])
    with pytest.raises(ExperimentError):
        experiment_create(name="tf", traffic_fraction=1.5,
                          variants=[VariantSpec("a", world.baseline.pk), VariantSpec("b", world.baseline.pk)])


def test_admin_is_staff_only(client, world, django_user_model):
    anonymous = client.get(CHANGELIST)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.force_login(django_user_model.objects.create_user("player", password="x" * 12))
    assert client.get(CHANGELIST).status_code == 302
    key_only = client.get(CHANGELIST, headers=world.headers)  # an API key is no way into the admin
    assert key_only.status_code == 302


def _inline_post(experiment: Experiment, variants: list[Variant], weight_override: int | None = None) -> dict:
    data = {
        "name": experiment.name, "kind": experiment.kind, "hypothesis": "h", "traffic_fraction": "1.0",
        "salt": experiment.salt,
        "variants-TOTAL_FORMS": str(len(variants)), "variants-INITIAL_FORMS": str(len(variants)),
        "variants-MIN_NUM_FORMS": "0", "variants-MAX_NUM_FORMS": "1000",
    }
    for i, v in enumerate(variants):
        data.update({f"variants-{i}-id": str(v.pk), f"variants-{i}-experiment": str(experiment.pk),
                     f"variants-{i}-key": v.key, f"variants-{i}-name": v.name,
                     f"variants-{i}-embedding_model": str(v.embedding_model_id),
                     f"variants-{i}-weight": str(weight_override or v.weight),
                     f"variants-{i}-is_control": "on" if v.is_control else ""})
    return data


def test_admin_creates_with_inline_variants_and_runs_actions(staff_client, world):
    data = {
        "name": "from-admin", "kind": "ab", "hypothesis": "text arm wins", "placement": "track_page",
        "traffic_fraction": "0.5", "salt": "abc",
        "variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-key": "control", "variants-0-name": "Control", "variants-0-embedding_model": world.baseline.pk,
        "variants-0-weight": "50", "variants-0-is_control": "on",
        "variants-1-key": "treatment", "variants-1-name": "Text", "variants-1-embedding_model": world.treatment.pk,
        "variants-1-weight": "50",
    }
    # a holdout is not made by hand: its arms come from the placements' "Start a holdout" action
    refused = staff_client.post(CHANGELIST + "add/", {**data, "kind": "holdout"})
    assert refused.status_code == 200 and "Start a holdout" in refused.content.decode()
    assert not Experiment.objects.filter(name="from-admin").exists()
    response = staff_client.post(CHANGELIST + "add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    experiment = Experiment.objects.get(name="from-admin")
    assert experiment.variants.count() == 2 and experiment.traffic_fraction == 0.5

    def act(action):
        return staff_client.post(CHANGELIST, {"action": action, "_selected_action": [experiment.pk]}, follow=True)

    act("start_experiments")
    experiment.refresh_from_db()
    assert experiment.status == "running"
    # locked: a changed weight is not saved
    variants = list(experiment.variants.order_by("id"))
    staff_client.post(f"{CHANGELIST}{experiment.pk}/change/", _inline_post(experiment, variants, weight_override=90))
    assert sorted(experiment.variants.values_list("weight", flat=True)) == [50, 50]
    page = staff_client.get(f"{CHANGELIST}{experiment.pk}/change/").content.decode()
    assert 'name="variants-0-weight"' not in page  # rendered read-only
    act("pause_experiments")
    experiment.refresh_from_db()
    assert experiment.status == "paused"
    act("stop_experiments")
    response = act("start_experiments")
    experiment.refresh_from_db()
    assert experiment.status == "stopped"
    assert "cannot restart" in response.content.decode()


def test_admin_api_key_shows_the_key_once_and_stores_a_hash(staff_client, db):
    response = staff_client.post("/admin/apikeys/apikey/add/", {"name": "player app"}, follow=True)
    assert response.status_code == 200
    row = ApiKey.objects.get(name="player app")
    shown = [str(m) for m in response.context["messages"]]
    key = next(m.split(": ")[-1] for m in shown if "shown once" in m)
    assert key.startswith(row.prefix + ".") and key not in row.key_hash
    assert verify_api_key(key) is not None
    listing = staff_client.get("/admin/apikeys/apikey/").content.decode()
    assert key not in listing


def test_create_api_key_command_prints_a_working_key(db):
    out = io.StringIO()
    call_command("create_api_key", "sim", stdout=out, stderr=io.StringIO())
    key = out.getvalue().strip()
    client = verify_api_key(key)
    assert client is not None and client.name == "sim"


def test_create_experiment_command(world):
    out = io.StringIO()
    call_command("create_experiment", "--name", "cmd", "--variant", "control=baseline",
                 "--variant", f"treatment={world.treatment.pk}", "--weights", "30,70", "--start", stdout=out)
    experiment = Experiment.objects.get(name="cmd")
    assert experiment.status == "running"
    assert dict(experiment.variants.values_list("key", "weight")) == {"control": 30, "treatment": 70}
    assert experiment.variants.get(key="control").embedding_model_id == world.baseline.pk
    assert experiment.variants.get(key="control").is_control
    with pytest.raises(CommandError):
        call_command("create_experiment", "--name", "bad", "--variant", "control=nosuchmodel",
                     "--variant", "t=baseline", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("create_experiment", "--name", "bad2", "--variant", "control=baseline",
                     "--variant", "t=baseline", "--weights", "1", stdout=io.StringIO())
    assert not Experiment.objects.filter(name__startswith="bad").exists()


def in_every_state(world) -> dict[str, Experiment]:
    """One experiment per status (each takes half the layer: the paused one keeps its half)."""
    experiments = {"draft": draft(world, "d")}
    paused = experiment_start(experiment=draft(world, "p"))
    experiments["paused"] = experiment_pause(experiment=paused)
    experiments["stopped"] = experiment_stop(experiment=experiment_start(experiment=draft(world, "s")))
    archived = experiment_stop(experiment=experiment_start(experiment=draft(world, "a")))
    experiments["archived"] = experiment_archive(experiment=archived)
    experiments["running"] = experiment_start(experiment=draft(world, "r"))
    assert {status: e.status for status, e in experiments.items()} == {s: s for s in experiments}
    return experiments


def test_only_a_draft_can_be_deleted_and_only_a_stopped_one_archived(world):
    experiments = in_every_state(world)
    for status in ("running", "paused", "stopped", "archived"):
        with pytest.raises(ExperimentError, match="cannot be deleted"):
            experiment_delete(experiment=experiments[status])
    experiment_delete(experiment=experiments["draft"])
    assert sorted(Experiment.objects.values_list("status", flat=True)) == ["archived", "paused", "running", "stopped"]
    assert not Variant.objects.filter(experiment_id=experiments["draft"].pk).exists()

    for status in ("running", "paused"):
        with pytest.raises(ExperimentError, match="only a stopped experiment can be archived"):
            experiment_archive(experiment=experiments[status])
    with pytest.raises(ExperimentError, match="only a stopped"):
        experiment_archive(experiment=draft(world, "fresh"))
    archived = experiment_archive(experiment=experiments["stopped"])
    assert archived.status == "archived" and archived.stopped_at is not None
    # archived is final: no restart, and stopping again does not bring it back
    with pytest.raises(ExperimentError, match="archived and cannot restart"):
        experiment_start(experiment=archived)
    assert experiment_stop(experiment=archived).status == "archived"


def test_admin_refuses_to_delete_experiments_that_ran(staff_client, world):
    experiments = in_every_state(world)
    for status in ("running", "paused", "stopped", "archived"):
        experiment = experiments[status]
        page = staff_client.get(f"{CHANGELIST}{experiment.pk}/change/").content.decode()
        assert f"{experiment.pk}/delete/" not in page, status  # no delete link
        assert staff_client.get(f"{CHANGELIST}{experiment.pk}/delete/").status_code == 403, status
        assert staff_client.post(f"{CHANGELIST}{experiment.pk}/delete/", {"post": "yes"}).status_code == 403, status
    # bulk delete: one experiment that ran in the selection refuses the whole action
    running, the_draft = experiments["running"], experiments["draft"]
    bulk = staff_client.post(CHANGELIST, {"action": "delete_selected", "post": "yes",
                                          "_selected_action": [running.pk, the_draft.pk]})
    assert bulk.status_code == 403
    assert Experiment.objects.filter(pk__in=[running.pk, the_draft.pk]).count() == 2
    assert Experiment.objects.count() == 5
    # drafts still go, one by one and in bulk
    second = draft(world, "second draft")
    assert staff_client.post(f"{CHANGELIST}{the_draft.pk}/delete/", {"post": "yes"}).status_code == 302
    staff_client.post(CHANGELIST, {"action": "delete_selected", "post": "yes", "_selected_action": [second.pk]})
    assert not Experiment.objects.filter(pk__in=[the_draft.pk, second.pk]).exists()
    assert sorted(Experiment.objects.values_list("status", flat=True)) == ["archived", "paused", "running", "stopped"]


def test_admin_archive_action_and_the_list_hides_archived_by_default(staff_client, world):
    experiments = in_every_state(world)
    stopped, running = experiments["stopped"], experiments["running"]
    response = staff_client.post(CHANGELIST, {"action": "archive_experiments",
                                              "_selected_action": [stopped.pk, running.pk]}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert f"{stopped.name}: archived" in shown
    assert any(m.startswith(f"{running.name}: only a stopped experiment") for m in shown)
    stopped.refresh_from_db()
    running.refresh_from_db()
    assert (stopped.status, running.status) == ("archived", "running")

    def listed(query: str = "") -> set[str]:
        page = staff_client.get(CHANGELIST + query)
        return {e.name for e in page.context["cl"].result_list}

    assert listed() == {"d", "p", "r"}  # both archived ones hidden
    assert listed("?status=all") == {"d", "p", "s", "a", "r"}
    assert listed("?status=archived") == {"s", "a"}
    assert listed("?status=running") == {"r"}
