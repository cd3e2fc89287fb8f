"""Interleaving experiments on the real database: the SQL team draft, serving in one statement, the pages' teams,
credited clicks and long listens and their aggregates, and the exactly-two-variants rule (services and admin)."""

from __future__ import annotations

import random
import uuid

import pytest
from django.db import connection

from experiments.analysis import experiment_results
from experiments.assignment import user_key
from experiments.events.clicks import ClickEvent, clicks_record
from experiments.events.ingest import LONG_LISTEN_SECONDS, drain_outbox
from experiments.events.plays import PlayEvent, events_record
from experiments.models import (
    Click,
    EventOutbox,
    Experiment,
    InterleavingPositionRollup,
    InterleavingUserDay,
    Page,
    Play,
    UserAggregate,
)
from experiments.selectors import clear_serving_cache, serving_config
from experiments.services import (
    ExperimentError,
    VariantSpec,
    experiment_create,
    experiment_start,
    placement_create,
    variants_set,
)
from experiments.serving import INTERLEAVED, recommend
from experiments.team_draft import TEAM_A, TEAM_B, interleave, team_draft
from recommender.vector_search import VectorSpace, nearest_to_track
from tests.experiments.serving_fixtures import build_world

CHANGELIST = "/admin/experiments/experiment/"


@pytest.fixture
def world(db):
    world = build_world(start_experiment=False)
    world.experiment = experiment_start(experiment=experiment_create(
        name=f"il-{uuid.uuid4().hex[:6]}", kind=Experiment.Kind.INTERLEAVING,
        variants=[VariantSpec("control", world.baseline.pk, 50, True), VariantSpec("treatment", world.treatment.pk)]))
    clear_serving_cache()
    return world


@pytest.mark.django_db
def test_sql_team_draft_is_the_python_one():
    rng = random.Random(5)
    with connection.cursor() as cursor:
        for _ in range(300):
            a = rng.sample(range(40), rng.randint(0, 15))
            b = rng.sample(range(40), rng.randint(0, 15))
            k = rng.randint(0, 16)
            coins = [rng.random() < 0.5 for _ in range((k + 1) // 2)]
            cursor.execute("SELECT team, rank FROM experiments_team_draft(%s::bigint[], %s::bigint[], "
                           "%s::boolean[], %s) ORDER BY pos", [a, b, coins, k])
            rows = cursor.fetchall()
            expected = team_draft(a, b, k, coins)
            assert [(t, r - 1) for t, r in rows] == [(p.team, p.rank) for p in expected.picks], (a, b, k, coins)


def _arms(world):
    return VectorSpace.of(world.baseline), VectorSpace.of(world.treatment)


def test_a_user_gets_both_rankers_merged_by_team_draft_and_the_page_records_the_teams(world):
    seed, excluded = world.tracks[3].pk, (world.tracks[10].pk,)
    result = recommend(user_id="alice", seed_track_id=seed, k=10, exclude=excluded)
    assert result.recorded and result.variant == INTERLEAVED and result.experiment_id == world.experiment.pk
    arm_a, arm_b = _arms(world)
    list_a = [n.track_id for n in nearest_to_track(arm_a, seed, 10, excluded)]
    list_b = [n.track_id for n in nearest_to_track(arm_b, seed, 10, excluded)]
    draft = interleave(result.request_id, list_a, list_b, 10)  # the same coins: the page is reproducible
    assert [item.track_id for item in result.items] == draft.items(list_a, list_b)
    assert result.teams == draft.teams and set(result.teams) == {TEAM_A, TEAM_B}
    # scores are each drafting model's own similarity
    scores = {n.track_id: n.score for n in nearest_to_track(arm_a, seed, 10, excluded)}
    scores_b = {n.track_id: n.score for n in nearest_to_track(arm_b, seed, 10, excluded)}
    for item, team in zip(result.items, result.teams, strict=True):
        assert item.score == pytest.approx((scores if team == TEAM_A else scores_b)[item.track_id], abs=1e-6)
    # the serving statement stored the page with its teams, and the narrow outbox row that hands it to the worker
    page = Page.objects.get(request_id=result.request_id)
    assert page.track_ids == [item.track_id for item in result.items] and page.teams == list(result.teams)
    control = serving_config().experiment.variants["control"].variant_id
    assert page.variant_id == control and page.experiment_id == world.experiment.pk
    row = EventOutbox.objects.get(request_id=result.request_id)
    assert (row.kind, row.variant_id, row.team) == (EventOutbox.Kind.RECOMMENDATION, control, None)
    drain_outbox()
    assert not EventOutbox.objects.filter(request_id=result.request_id).exists()
    assert Page.objects.get(request_id=result.request_id).teams == list(result.teams)


def test_head_requests_merge_the_same_way_and_record_nothing(world):
    before = EventOutbox.objects.count(), Page.objects.count()
    result = recommend(user_id="bob", seed_track_id=world.tracks[5].pk, k=6, record=False)
    assert not result.recorded and result.teams is not None and len(result.items) == 6
    assert (EventOutbox.objects.count(), Page.objects.count()) == before


def test_clicks_credit_the_team_of_the_item_once(world):
    pages = [recommend(user_id=user, seed_track_id=world.tracks[i].pk, k=8)
             for i, user in enumerate(["u1", "u1", "u2"])]
    drain_outbox()  # half of the clicks come after their page was aggregated, half before
    pages.append(recommend(user_id="u2", seed_track_id=world.tracks[9].pk, k=8))
    clicks = [(page, position) for page in pages for position in (1, 2, 5)]
    events = [ClickEvent(uuid.uuid4(), p.request_id, p.items[pos - 1].track_id, pos) for p, pos in clicks]
    assert clicks_record(events).accepted == len(events)
    again = clicks_record([ClickEvent(uuid.uuid4(), e.request_id, e.track_id, e.position) for e in events])
    assert again.accepted == 0 and again.duplicates == len(events)
    drain_outbox()
    drain_outbox()  # nothing left: nothing counted twice
    expected = {}
    for page, position in clicks:
        team = page.teams[position - 1]
        user = "u1" if page in pages[:2] else "u2"
        a, b = expected.get(user, (0, 0))
        expected[user] = (a + (team == TEAM_A), b + (team == TEAM_B))

    for user, (a, b) in expected.items():
        row = InterleavingUserDay.objects.get(experiment_id=world.experiment.pk, user_key=user_key(user))
        assert (row.credits_a, row.credits_b, row.pages) == (a, b, 2)
        assert row.a_first == sum(p.teams[0] == TEAM_A for p in pages if (p in pages[:2]) == (user == "u1"))
    assert sorted(Click.objects.filter(experiment_id=world.experiment.pk).values_list("team", flat=True)) == sorted(
        page.teams[position - 1] for page, position in clicks)
    rollup = {r.position: r for r in InterleavingPositionRollup.objects.filter(experiment_id=world.experiment.pk)}
    assert sorted(rollup) == list(range(1, 9))
    for position, r in rollup.items():
        assert r.pages == 4 and r.slots_b == sum(p.teams[position - 1] == TEAM_B for p in pages)
        shown = [p.teams[position - 1] for p in pages] if position in (1, 2, 5) else []
        assert (r.clicks_a, r.clicks_b) == (shown.count(TEAM_A), shown.count(TEAM_B))
    # the A/B aggregates still count the interleaved pages (overall CTR of the merged lists)
    assert sum(UserAggregate.objects.filter(experiment_id=world.experiment.pk).values_list("clicks", flat=True)) == 12


def test_plays_carry_their_items_team_and_long_listens_credit_it(world):
    """A play on an interleaved page takes its item's team like its click; a play of >= 30 s is a long listen of
    that team in the per-user-day credits, a shorter one is not, and a batch sent twice counts once."""
    pages = [recommend(user_id="listener", seed_track_id=world.tracks[i].pk, k=6) for i in (1, 4)]
    picks = [(page, position, seconds) for page in pages
             for position, seconds in ((1, 95.0), (2, 12.0), (3, float(LONG_LISTEN_SECONDS)))]
    clicks = [ClickEvent(uuid.uuid4(), p.request_id, p.items[pos - 1].track_id, pos) for p, pos, _ in picks]
    plays = [PlayEvent(uuid.uuid4(), p.request_id, p.items[pos - 1].track_id, pos, secs, secs < 30)
             for p, pos, secs in picks]
    assert events_record(clicks, plays).accepted == 2 * len(picks)
    assert events_record(clicks, plays).duplicates == 2 * len(picks)
    drain_outbox()
    drain_outbox()
    assert sorted(Play.objects.filter(experiment_id=world.experiment.pk).values_list("position", "team")) == sorted(
        (pos, p.teams[pos - 1]) for p, pos, _ in picks)
    long_teams = [p.teams[pos - 1] for p, pos, secs in picks if secs >= LONG_LISTEN_SECONDS]
    row = InterleavingUserDay.objects.get(experiment_id=world.experiment.pk, user_key=user_key("listener"))
    assert (row.listens_a, row.listens_b) == (long_teams.count(TEAM_A), long_teams.count(TEAM_B))
    assert (row.credits_a + row.credits_b, row.pages) == (len(picks), 2)
    # the report counts them per team and gives B's share of the long listens
    report = experiment_results(world.experiment)
    assert (report.listens_a, report.listens_b) == (long_teams.count(TEAM_A), long_teams.count(TEAM_B))
    assert report.listen_share_b.effect == long_teams.count(TEAM_B) / len(long_teams)
    assert report.to_dict()["listen_share_b"]["effect"] == report.listen_share_b.effect
    # the A/B aggregates count the same plays
    aggregate = UserAggregate.objects.get(experiment_id=world.experiment.pk, user_key=user_key("listener"))
    assert (aggregate.plays, aggregate.long_listens) == (len(picks), len(long_teams))


def test_users_outside_the_experiments_buckets_get_the_placements_default_unrecorded(db):
    """An interleaving experiment holds buckets of the placement's layer like any other: a user outside them gets
    the placement's default (the baseline here), one ranker, recorded outside any experiment."""
    world = build_world(start_experiment=False)
    experiment = experiment_start(experiment=experiment_create(
        name="il-traffic", kind=Experiment.Kind.INTERLEAVING, traffic_fraction=0.5,
        variants=[VariantSpec("control", world.baseline.pk, 50, True), VariantSpec("treatment", world.treatment.pk)]))
    clear_serving_cache()
    layer = serving_config().placements["track_page"]
    held = [f"carol-{i}" for i in range(200) if layer.assign(f"carol-{i}").experiment is not None]
    outside = next(f"carol-{i}" for i in range(200) if layer.assign(f"carol-{i}").experiment is None)
    assert 60 < len(held) < 140  # about half the users are in its buckets
    inside = recommend(user_id=held[0], seed_track_id=world.tracks[2].pk, k=5)
    assert inside.experiment_id == experiment.pk and inside.teams is not None
    assert Page.objects.get(request_id=inside.request_id).placement == "track_page"
    result = recommend(user_id=outside, seed_track_id=world.tracks[2].pk, k=5)
    assert result.teams is None and result.model_id == world.baseline.pk
    # recorded like every page served outside an experiment: no experiment, no teams
    assert result.recorded and result.experiment_id is None and result.variant is None
    page = Page.objects.get(request_id=result.request_id)
    assert (page.experiment_id, page.variant_id, page.teams) == (None, None, None)


def test_an_interleaving_experiment_runs_on_its_placement_beside_an_ab_test_on_another(db):
    """Interleaving on ``autoplay`` (all its buckets) while an A/B test holds ``track_page``: each request gets its
    placement's experiment, and the interleaved page is stored with its placement."""
    world = build_world()  # the A/B experiment on track_page, all of its traffic
    placement_create(key="autoplay", default_model=world.baseline)
    interleaving = experiment_start(experiment=experiment_create(
        name="il-autoplay", kind=Experiment.Kind.INTERLEAVING, placement="autoplay",
        variants=[VariantSpec("control", world.baseline.pk, 50, True), VariantSpec("treatment", world.treatment.pk)]))
    clear_serving_cache()
    merged = recommend(user_id="dave", seed_track_id=world.tracks[3].pk, k=6, placement="autoplay")
    assert (merged.experiment_id, merged.variant, merged.placement) == (interleaving.pk, INTERLEAVED, "autoplay")
    assert merged.teams is not None and len(merged.teams) == 6
    page = Page.objects.get(request_id=merged.request_id)
    assert (page.placement, list(page.teams)) == ("autoplay", list(merged.teams))
    plain = recommend(user_id="dave", seed_track_id=world.tracks[3].pk, k=6)
    assert plain.experiment_id == world.experiment.pk and plain.teams is None and plain.placement == "track_page"
    assert Page.objects.get(request_id=plain.request_id).placement == "track_page"


def test_an_interleaving_experiment_needs_exactly_two_variants(db):
    world = build_world(start_experiment=False)
    three = [VariantSpec("control", world.baseline.pk, 50, True), VariantSpec("treatment", world.treatment.pk),
             VariantSpec("third", world.treatment.pk)]
    with pytest.raises(ExperimentError, match="exactly two variants"):
        experiment_create(name="il-three", kind=Experiment.Kind.INTERLEAVING, variants=three)
    experiment = experiment_create(name="ab-three", variants=three)  # an A/B test may have three
    assert experiment.variants.count() == 3
    with pytest.raises(ExperimentError, match="kind"):
        experiment_create(name="bad-kind", kind="bandit", variants=three[:2])
    experiment = experiment_create(name="il-two", kind=Experiment.Kind.INTERLEAVING, variants=three[:2])
    with pytest.raises(ExperimentError, match="exactly two variants"):
        variants_set(experiment=experiment, variants=three)


def test_admin_refuses_an_interleaving_experiment_without_exactly_two_variants(client, django_user_model, db):
    world = build_world(start_experiment=False)
    client.force_login(django_user_model.objects.create_user("il-boss", password="x" * 12, is_staff=True,
                                                             is_superuser=True))
    data = {"name": "il-admin", "kind": "interleaving", "hypothesis": "", "placement": "track_page",
            "traffic_fraction": "1.0", "salt": "s1",
            "variants-TOTAL_FORMS": "3", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "0",
            "variants-MAX_NUM_FORMS": "1000"}
    for i, (key, model) in enumerate([("control", world.baseline), ("treatment", world.treatment),
                                      ("third", world.treatment)]):
        data.update({f"variants-{i}-key": key, f"variants-{i}-name": key, f"variants-{i}-embedding_model": model.pk,
                     f"variants-{i}-weight": "50", f"variants-{i}-is_control": "on" if i == 0 else ""})
    response = client.post(CHANGELIST + "add/", data)
    assert response.status_code == 200  # the form again, with the reason
    assert "exactly two variants" in response.content.decode()
    assert not Experiment.objects.filter(name="il-admin").exists()
    data["variants-TOTAL_FORMS"] = "2"
    assert client.post(CHANGELIST + "add/", data).status_code == 302
    assert Experiment.objects.get(name="il-admin").kind == Experiment.Kind.INTERLEAVING
