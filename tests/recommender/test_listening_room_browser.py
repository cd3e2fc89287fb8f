"""The listening room in a real headless Chromium (Debian's, driven by Playwright), on a real trained world.

The world is the tiny demo catalog's (as in test_embeddings_demo.py): real rendered audio, its
descriptions sourced and mined, musicnn features, the baseline registered, CrossMuSim trained for 40
steps, both indexed in pgvector and activated for their arms, and the experiment
"cross-modal vs baseline" running. A staff user logs in through the admin form, reaches the page from
the dashboard's navigation, searches by text, opens the first hit as the seed and checks that:

- the text hits are ``GET /api/v1/search``'s, and each arm's list is what ``GET /api/v1/recommendations``
  gives a player of that arm (found by asking the API for users until both variants answered);
- every "why" is that track's kept description closest to the seed's audio, recomputed here with the
  text tower and numpy;
- an audio element plays (``currentTime`` advances, also after a seek) and the audio view answered a
  range request with 206; a file gone from disk shows the server's reason in the page;
- an anonymous browser and a player's API key get the login page, never the page or audio.

Screenshots: docs/listening-room.png (the README's) and var/screenshots/listening-room*.png.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from abplatform.apikeys.services import api_key_create
from recommender.models import Description, EmbeddingModel, Track, TrackEmbedding
from recommender.services.descriptions import mine_descriptions, source_descriptions
from recommender.services.embedding_runtime import text_embed
from recommender.services.search import text_search
from tests.chromium import launch_chromium
from tests.recommender.democatalog_fixtures import load_tiny_demo_catalog
from tests.recommender.embeddings_fixtures import one_torch_thread, persistent_features  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
README_SCREENSHOT = ROOT / "docs" / "listening-room.png"
PASSWORD = "pw-listening-room-1"
QUERY = "a lively jig for fiddle"
EXPERIMENT = "cross-modal vs baseline"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread", "persistent_features")]


@pytest.fixture
def world(transactional_db, tiny_demo_build):
    """The trained, indexed, served world and what the page must show, all read before the browser starts
    (Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls under it)."""
    load_tiny_demo_catalog(tiny_demo_build)
    source_descriptions(sources="metadata,document")
    mine_descriptions()
    call_command("extract_audio_features", stdout=io.StringIO())
    call_command("train_baseline", stdout=io.StringIO())
    call_command("train_crossmusim", "--steps", "40", "--seed", "0", stdout=io.StringIO())
    cross = EmbeddingModel.objects.get(kind="crossmusim")
    baseline = EmbeddingModel.objects.get(kind="baseline")
    for model in (baseline, cross):
        call_command("index_embeddings", str(model.pk), "--activate-arm", model.kind, stdout=io.StringIO())
    call_command("create_experiment", "--name", EXPERIMENT, "--variant", "control=baseline",
                 "--variant", "treatment=crossmusim", "--start", stdout=io.StringIO())
    User.objects.create_user("curator", password=PASSWORD, is_staff=True)
    _, player_key = api_key_create(name="player app")
    cross.refresh_from_db()
    baseline.refresh_from_db()

    seed = text_search(QUERY, 10).hits[0].track
    # The expected "why" of every track, recomputed: its kept descriptions through the text tower, the
    # cosine to the seed's audio vector in crossmusim's space, the best one.
    seed_vector = np.asarray(TrackEmbedding.objects.get(model=cross, track=seed).embedding, dtype=np.float64)
    kept: dict[int, list[Description]] = {}
    for row in Description.objects.filter(kept=True).order_by("track_id", "id"):
        kept.setdefault(row.track_id, []).append(row)
    rows = [row for described in kept.values() for row in described]
    vectors = text_embed(cross, [row.text for row in rows]).astype(np.float64)
    cosine = vectors @ seed_vector / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(seed_vector))
    best: dict[int, tuple[float, Description]] = {}
    for row, score in zip(rows, cosine, strict=True):
        if row.track_id not in best or score > best[row.track_id][0]:
            best[row.track_id] = (float(score), row)
    return {
        "seed": seed.pk, "player_key": player_key, "cross": cross, "baseline": baseline,
        "why": {track_id: (row.text, row.source) for track_id, (_, row) in best.items()},
        "kept": {track_id: {row.text for row in described} for track_id, described in kept.items()},
        "audio_paths": dict(Track.objects.values_list("pk", "audio_path")),
    }


@pytest.fixture
def browser(world):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, "--autoplay-policy=no-user-gesture-required")
        try:
            yield browser
        finally:
            browser.close()


def login(page, base: str, next_path: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_path}")
    page.fill("#id_username", "curator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state("networkidle")


def ids(page, selector: str) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.track)")]


def arm_lists_from_the_api(request, base: str, key: str, seed: int) -> dict[str, dict]:
    """What players of each variant get for this seed: ask for users until both variants have answered."""
    answers: dict[str, dict] = {}
    for n in range(200):
        answer = request.get(f"{base}/api/v1/recommendations?user=listener-{n}&seed_track={seed}&k=10",
                             headers={"Authorization": f"Api-Key {key}"})
        assert answer.status == 200, answer.text()
        body = answer.json()
        answers.setdefault(body["variant"], body)
        if {"control", "treatment"} <= answers.keys():
            return answers
    raise AssertionError(f"only variants {sorted(answers)} answered")


def test_listening_room_in_chromium(live_server, world, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base, seed, key = live_server.url, world["seed"], world["player_key"]
    cross, baseline = world["cross"], world["baseline"]

    # Anonymous: sent to the login. A player's API key: sent to the login too, for the page and the audio.
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/listen/")
    assert "/admin/login/" in page.url and page.locator("#arm-columns").count() == 0
    for path in ("/listen/", f"/listen/audio/{seed}"):
        answer = context.request.get(f"{base}{path}", headers={"Authorization": f"Api-Key {key}", "Range": "bytes=0-"},
                                     max_redirects=0)
        assert answer.status == 302 and answer.headers["location"].startswith(f"/admin/login/?next={path}")
        assert not answer.headers.get("content-type", "").startswith("audio/")
    context.close()

    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    errors, audio_answers = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: audio_answers.append((r.url, r.status, r.headers.get("content-range")))
            if "/listen/audio/" in r.url else None)
    login(page, base, "/experiments/")
    page.click("#nav-listen")
    page.wait_for_load_state("networkidle")
    assert page.url == f"{base}/listen/"

    # Search by words: the hits are the search API's, the first one becomes the seed.
    page.fill("#search-q", QUERY)
    page.click("#search-go")
    page.wait_for_load_state("networkidle")
    api_search = context.request.get(f"{base}/api/v1/search?q={QUERY}&k=10",
                                     headers={"Authorization": f"Api-Key {key}"}).json()
    assert ids(page, "#text-hits li[data-track]") == [item["track"] for item in api_search["items"]]
    assert api_search["items"][0]["track"] == seed
    assert str(cross) in page.locator("#search-results").inner_text()
    page.locator("#text-hits li[data-track] a.seed-link").first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("#seed").get_attribute("data-track") == str(seed)

    # Each arm's list is what a player of that arm gets from the recommendations API.
    api = arm_lists_from_the_api(context.request, base, key, seed)
    listed = {"baseline": ids(page, "#column-baseline li[data-track]"),
              "crossmusim": ids(page, "#column-crossmusim li[data-track]")}
    assert listed["baseline"] == [item["track"] for item in api["control"]["items"]]
    assert listed["crossmusim"] == [item["track"] for item in api["treatment"]["items"]]
    assert api["control"]["model_id"] == baseline.pk and api["treatment"]["model_id"] == cross.pk
    assert len(listed["crossmusim"]) == 10 and seed not in listed["crossmusim"]
    shared = set(listed["baseline"]) & set(listed["crossmusim"])
    assert set(ids(page, "#column-crossmusim li[data-shared]")) == shared
    assert set(ids(page, "#column-baseline li[data-shared]")) == shared

    # Why: the kept description of that track closest to the seed in crossmusim's shared space.
    for column in ("crossmusim", "baseline"):
        for row in page.locator(f"#column-{column} li[data-track]").all():
            track = int(row.get_attribute("data-track"))
            why = row.locator(".why-text")
            if track not in world["kept"]:
                assert why.count() == 0
                continue
            text = why.inner_text()
            assert text in world["kept"][track]
            assert (text, row.locator(".why .source").get_attribute("data-source")) == world["why"][track]
    assert f"in {cross}'s shared space ({baseline} has no text tower)" in page.locator("#column-baseline").inner_text()

    # Model cards: the registry's metrics, the arm and the experiment placement.
    card = page.locator(f".model-card[data-model='{cross.pk}']")
    metric = card.locator("[data-metric='cross-instrument style P@10']").inner_text()
    assert metric.startswith(f"{cross.metrics['test']['xinst_style_p10']:.3f}")
    serves = card.locator("[data-field='serves']").inner_text()
    assert "the crossmusim arm" in serves and f"variant 'treatment' of experiment '{EXPERIMENT}' (running)" in serves
    assert "metadata" in card.locator("[data-field='text_mix']").inner_text()

    # Play the first crossmusim track: it loads, plays, seeks; the server answered ranges with 206.
    first = page.locator("#column-crossmusim li[data-track]").first
    first_id = int(first.get_attribute("data-track"))
    first.locator("button.play").click()
    page.wait_for_function("document.getElementById('player').currentTime > 0.3", timeout=30_000)
    page.evaluate("() => { const p = document.getElementById('player'); p.currentTime = p.duration * 0.6; }")
    page.wait_for_function(
        "() => { const p = document.getElementById('player'); return p.currentTime > p.duration * 0.6 + 0.2; }",
        timeout=30_000)
    ranged = [a for a in audio_answers if a[0].endswith(f"/listen/audio/{first_id}") and a[1] == 206]
    assert ranged and all(a[2].startswith("bytes ") for a in ranged), audio_answers
    assert "playing" in (first.get_attribute("class") or "")
    assert not errors, errors
    # A viewport as tall as the page, so the sticky player sits at its foot in the full-page screenshot.
    page.set_viewport_size({"width": 1440, "height": page.evaluate("document.documentElement.scrollHeight")})
    page.screenshot(path=str(README_SCREENSHOT), full_page=True)
    page.screenshot(path=str(SCREENSHOTS / "listening-room.png"), full_page=True)

    # A file gone from disk: the page shows the audio view's reason, not a silent player.
    last = page.locator("#column-crossmusim li[data-track]").last
    gone = int(last.get_attribute("data-track"))
    path = Path(world["audio_paths"][gone])
    hidden = path.with_name(path.name + ".away")
    path.rename(hidden)
    try:
        last.locator("button.play").click()
        page.wait_for_function("document.getElementById('audio-message').dataset.explained === '1'",
                               timeout=30_000)
        message = page.locator("#audio-message").inner_text()
        assert f"track {gone} (" in message and "missing on the server" in message
        page.screenshot(path=str(SCREENSHOTS / "listening-room-missing-audio.png"))
    finally:
        hidden.rename(path)
    assert not errors, errors
    context.close()
