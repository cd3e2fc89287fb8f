"""Sourcing and mining through the Django shell: commands, the done-when check, resumability, Celery tasks."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from recommender.models import Description, DescriptionFetch
from recommender.services.descriptions import (
    descriptions_summary,
    mine_descriptions,
    source_descriptions,
    tracks_without_kept_description,
)
from tests.recommender.descriptions_fixtures import RecordingServer, llm_routes, make_track, web_routes

ABC_DOC = """X:1
T:The Kesh
R:jig
O:Ireland
M:6/8
K:G
N:A very popular session jig, often played as the first tune in a set of jigs.
H:Collected by Francis O'Neill in Chicago
+:from a piper from County Clare.
W:Oh the morning dew falls
W:on the green hill by the water
W:and I walk alone
W:down to the river
|:GAG GAB|ABA ABd|"""

KERN_DOC = """!!!COM: Bach, Johann Sebastian
!!!OTL: Wer nur den lieben Gott laesst walten
!!!AGN: chorale
!!!AMT: simple quadruple
!!!ONB: A four-part chorale harmonisation for soprano, alto, tenor and bass, sung by the congregation.
**kern\t**kern
4c\t4e
*-\t*-"""


def catalog():
    """Four tracks: an ABC tune, a kern chorale, one with a free-text column, one with labels only."""
    return [
        make_track("The Kesh", artist="Trad.", album="O'Neill's 1001", document_text=ABC_DOC,
                   labels={"style": "irish_dance", "tune_type": "jig", "meter": "6/8", "key": "G", "mode": "major",
                           "tempo_bpm": 116, "instruments": ["fiddle", "piano"], "region": "Ireland"}),
        make_track("Wer nur den lieben Gott", artist="J. S. Bach", album="Chorales", document_text=KERN_DOC,
                   labels={"style": "baroque_chorale", "meter": "4/4", "key": "A", "mode": "minor",
                           "tempo_bpm": 72, "instruments": ["organ"]}),
        make_track("Scarborough Fair", metadata={"notes": "An English folk ballad in the Dorian mode, usually sung "
                                                          "slowly to a plucked guitar accompaniment."},
                   labels={"style": "english_folk", "meter": "3/4", "mode": "other", "instruments": ["guitar"]}),
        make_track("Untitled 4", labels={"style": "renaissance_madrigal", "meter": "4/4", "mode": "major"}),
    ]


@pytest.mark.django_db
def test_done_when_without_llm_every_track_keeps_a_document_or_metadata_description(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_LOCAL = False  # no endpoint and no local model: the llm source is skipped
    tracks = catalog()
    ids = [t.id for t in tracks]
    out = io.StringIO()
    call_command("source_descriptions", "--tracks", ",".join(map(str, ids)), stdout=out)
    text = out.getvalue()
    assert "llm: skipped, no LLM configured" in text
    assert Description.objects.filter(source="llm").count() == 0
    assert Description.objects.filter(source="metadata", details__template=True).count() >= 4 * 3
    assert Description.objects.filter(source="document", track=tracks[0]).count() >= 3

    out = io.StringIO()
    call_command("mine_descriptions", "--tracks", ",".join(map(str, ids)), "--max-per-track", "4", stdout=out)
    text = out.getvalue()
    assert "source" in text and "fetched" in text and "rejected: lyrics only" in text
    assert "every track has at least one kept description" in text
    assert tracks_without_kept_description(ids) == []
    for track in tracks:
        kept = Description.objects.filter(track=track, kept=True)
        assert kept.filter(source__in=["document", "metadata"]).exists()
        assert kept.count() <= 4
    lyrics = Description.objects.get(track=tracks[0], perspective="lyrics")
    assert lyrics.kept is False and lyrics.reason == "lyrics only"
    assert Description.objects.filter(kept=False).exclude(reason="").count() == Description.objects.filter(
        kept=False).count()


@pytest.mark.django_db
def test_sourcing_is_resumable_and_idempotent(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_LOCAL = False  # no endpoint and no local model: the llm source is skipped
    tracks = catalog()
    first = source_descriptions(sources="document,metadata", track_ids=[t.id for t in tracks])
    count = Description.objects.count()
    assert first.per_source["metadata"].units_run == 4 and first.per_source["metadata"].new >= 12
    again = source_descriptions(sources="document,metadata", track_ids=[t.id for t in tracks])
    assert again.per_source["metadata"].units_run == 0 and again.per_source["metadata"].units_skipped == 4
    assert Description.objects.count() == count
    forced = source_descriptions(sources="metadata", track_ids=[t.id for t in tracks], force=True)
    assert forced.per_source["metadata"].units_run == 4 and forced.per_source["metadata"].new == 0
    assert DescriptionFetch.objects.get(track=tracks[0], source="metadata").attempts == 2


@pytest.mark.django_db
def test_llm_fills_in_when_configured_and_a_rerun_sends_nothing(settings, tmp_path):
    server = RecordingServer(llm_routes()).start()
    try:
        settings.LLM_BASE_URL = server.base_url + "/v1"
        settings.LLM_MODEL = "test-model"
        settings.LLM_CACHE_DIR = tmp_path / "llm"
        settings.LLM_TIMEOUT = 2.0
        tracks = catalog()[:2]
        ids = [t.id for t in tracks]
        out = io.StringIO()
        call_command("source_descriptions", "--sources", "document,llm", "--tracks", ",".join(map(str, ids)),
                     stdout=out)
        assert server.count("/v1/chat/completions") == 10
        assert "llm tokens: 1200 prompt + 400 completion" in out.getvalue()
        assert Description.objects.filter(source="llm").count() == 20
        # Document text went into the prompt as context.
        assert any("A very popular session jig" in b["messages"][-1]["content"] for b in server.bodies)
        # A re-run with the units forced still sends nothing: every prompt is in the cache.
        report = source_descriptions(sources="llm", track_ids=ids, force=True)
        assert server.count("/v1/chat/completions") == 10
        assert report.llm_usage["cache_hits"] == 10
        mine_descriptions(track_ids=ids)
        summary = {row["source"]: row for row in descriptions_summary(ids)}
        assert summary["llm"]["kept"] >= 2 and summary["llm"]["unmined"] == 0
    finally:
        server.stop()


@pytest.mark.django_db
def test_web_source_from_metadata_urls_records_failures(settings, tmp_path):
    site = RecordingServer(web_routes()).start()
    try:
        settings.WEB_CACHE_DIR = tmp_path / "web"
        settings.WEB_MIN_INTERVAL_S = 0.0
        settings.WEB_TIMEOUT_S = 0.5
        settings.WEB_MAX_RETRIES = 0
        track = make_track("The Kesh", labels={"tune_type": "jig", "meter": "6/8", "key": "G", "mode": "major"},
                           metadata={"urls": [site.base_url + "/article", site.base_url + "/private/article",
                                              site.base_url + "/score.pdf"]})
        report = source_descriptions(sources=["web"], track_ids=[track.id])
        stats = report.per_source["web"]
        assert stats.units_run == 3 and dict(stats.failures) == {"disallowed by robots.txt": 1, "not HTML": 1}
        assert Description.objects.filter(track=track, source="web").count() >= 2
        mine_descriptions(track_ids=[track.id])
        summary = {row["source"]: row for row in descriptions_summary([track.id])}
        assert summary["web"]["failures"] == 2 and summary["web"]["kept"] >= 1
        assert summary["web"]["failures_by_reason"] == {"disallowed by robots.txt": 1, "not HTML": 1}
        # Failed units are tried again on the next run; the page that worked is not.
        again = source_descriptions(sources=["web"], track_ids=[track.id])
        assert again.per_source["web"].units_run == 2 and again.per_source["web"].units_skipped == 1
    finally:
        site.stop()


def test_bad_command_input_is_a_clear_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown source"):
        call_command("source_descriptions", "--sources", "web,telepathy")
    with pytest.raises(CommandError, match="SITE=TEMPLATE"):
        call_command("source_descriptions", "--url-template", "nonsense")


@pytest.mark.django_db(transaction=True)
def test_celery_tasks_run_the_same_services_in_a_real_worker(celery_worker_process):
    from recommender.tasks import mine_descriptions_task, source_descriptions_task

    tracks = catalog()
    ids = [t.id for t in tracks]
    sourced = source_descriptions_task.delay(["document", "metadata"], ids).get(timeout=120)
    assert sourced["report"]["per_source"]["metadata"]["units_run"] == 4
    assert Description.objects.filter(track_id__in=ids, source="metadata").count() >= 12
    # Mining through the worker too would load MiniLM a second time (~10 s of CPU); the task is the same thin
    # wrapper, so its body runs here, in-process, on the rows the worker wrote.
    mined = mine_descriptions_task(ids, False, 3)
    assert mined["report"]["tracks"] == 4 and mined["report"]["kept"] >= 4
    assert {row["source"]: row["unmined"] for row in mined["summary"]} == {
        "document": 0, "web": 0, "metadata": 0, "llm": 0}
    assert tracks_without_kept_description(ids) == []
    assert all(Description.objects.filter(track=t, kept=True).count() <= 3 for t in tracks)


@pytest.mark.django_db
def test_done_when_on_the_tiny_demo_catalog(tiny_demo_catalog, settings, capsys):
    settings.LLM_BASE_URL = ""
    settings.LLM_LOCAL = False  # no endpoint and no local model: the llm source is skipped
    ids = [t.id for t in tiny_demo_catalog.tracks]
    call_command("source_descriptions", "--sources", "document,metadata,llm")
    call_command("mine_descriptions")
    out = capsys.readouterr().out
    print(out)
    assert "every track has at least one kept description" in out
    assert tracks_without_kept_description(ids) == []
    summary = {row["source"]: row for row in descriptions_summary(ids)}
    assert summary["metadata"]["kept"] >= len(ids) and summary["document"]["fetched"] > 0
    assert summary["llm"]["fetched"] == 0


@pytest.mark.django_db
def test_admin_lists_descriptions_filtered_by_source_kept_and_reason(admin_client):
    track = make_track("Admin Tune", labels={"style": "reel", "meter": "4/4"})
    Description.objects.create(track=track, text="A driving reel in 4/4 for fiddle.", source="metadata",
                               origin="template:style:v1", kept=True, score=0.8, text_hash="a" * 64)
    Description.objects.create(track=track, text="We use cookies on this site, accept all cookies.", source="web",
                               origin="http://example.org/a", kept=False, reason="boilerplate: cookie banner",
                               text_hash="b" * 64)
    url = "/admin/recommender/description/"
    page = admin_client.get(url, {"source": "web", "kept__exact": "0", "reason": "boilerplate: cookie banner"})
    assert page.status_code == 200
    body = page.content.decode()
    assert "We use cookies on this site" in body and "A driving reel" not in body
    page = admin_client.get(url, {"kept__exact": "1"})
    assert "A driving reel" in page.content.decode() and "We use cookies" not in page.content.decode()
    assert admin_client.get("/admin/recommender/descriptionfetch/", {"ok__exact": "0"}).status_code == 200
