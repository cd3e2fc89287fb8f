"""The listening room's audio view and page, through Django's test client on the real database.

Range parsing is tested as a pure function first; then the view's answers (200 / 206 / 304 / 416 / 404),
its headers, and who may reach the audio and the page: staff sessions only; an anonymous request, a
logged-in non-staff user and a player's (or analyst's) API key are all redirected (302) to the admin login.
"""

from __future__ import annotations

import hashlib
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from abplatform.apikeys.services import api_key_create
from recommender.models import Description, EmbeddingModel, Track, TrackEmbedding
from recommender.services.audio import (
    ByteRange,
    RangeNotSatisfiableError,
    if_range_allows,
    parse_range,
)
from recommender.vector_search import VectorSpace, create_hnsw_index, nearest_to_track
from tests.recommender.embeddings_fixtures import tone_track

LOGIN = "/admin/login/"


# --- parse_range: pure ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-499", ByteRange(0, 499)),
    ("bytes=0-", ByteRange(0, 999)),            # what Chromium asks first
    ("bytes=500-", ByteRange(500, 999)),
    ("bytes=-100", ByteRange(900, 999)),         # the last 100 bytes
    ("bytes=-5000", ByteRange(0, 999)),          # a suffix longer than the file: all of it
    ("bytes=900-5000", ByteRange(900, 999)),     # clamped to the end
    ("bytes=999-999", ByteRange(999, 999)),
    ("BYTES = 10-20", ByteRange(10, 20)),        # the unit is case-insensitive, whitespace tolerated
    ("bytes=10-20,", ByteRange(10, 20)),         # an empty list element is ignored (RFC 9110 #rule)
])
def test_parse_range_answers_the_one_range_asked(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", [
    None, "", "bytes", "bytes=", "bytes=-", "items=0-10", "bytes=a-b", "bytes=10-5", "bytes=0-10,20-30",
    "bytes=+1-5", "bytes=1--5", "bytes=1-2-3", "bytes=\u00b9-\u00b2", "bytes=0x10-20", "bytes 0-10",
])
def test_parse_range_sends_the_whole_file_for_what_it_does_not_honour(header):
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=1000-", 1000), ("bytes=1000-2000", 1000), ("bytes=5000-", 1000), ("bytes=-0", 1000),
    ("bytes=0-", 0), ("bytes=-10", 0),
])
def test_parse_range_refuses_a_range_past_the_end(header, size):
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, size)


@given(size=st.integers(1, 10**9), first=st.integers(0, 2 * 10**9), length=st.integers(1, 10**9))
def test_parse_range_stays_inside_the_file(size, first, length):
    header = f"bytes={first}-{first + length - 1}"
    if first >= size:
        with pytest.raises(RangeNotSatisfiableError):
            parse_range(header, size)
        return
    byte_range = parse_range(header, size)
    assert byte_range.start == first
    assert 0 <= byte_range.start <= byte_range.end < size
    assert byte_range.length == min(length, size - first)
    assert byte_range.content_range(size) == f"bytes {first}-{byte_range.end}/{size}"


def test_if_range_needs_the_same_strong_etag_or_the_exact_date():
    etag, mtime = '"1-2-3"', 1_700_000_000
    assert if_range_allows(None, etag, mtime)
    assert if_range_allows('"1-2-3"', etag, mtime)
    assert not if_range_allows('"1-2-4"', etag, mtime)
    assert not if_range_allows('W/"1-2-3"', etag, mtime)
    assert if_range_allows("Tue, 14 Nov 2023 22:13:20 GMT", etag, mtime)
    assert not if_range_allows("Tue, 14 Nov 2023 22:13:21 GMT", etag, mtime)
    assert not if_range_allows("not a date", etag, mtime)


# --- the audio view ---------------------------------------------------------------------------------------------

@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("staff", password="pw-staff-listen-1", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def tone(db, tmp_path) -> Track:
    return tone_track(tmp_path / "audio", 3)


def audio_url(track_id: int) -> str:
    return f"/listen/audio/{track_id}"


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_whole_file_with_type_and_caching_headers(staff, tone):
    data = Path(tone.audio_path).read_bytes()
    response = staff.get(audio_url(tone.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert response["Content-Length"] == str(len(data)) and body(response) == data
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "private, max-age=3600"
    assert response["ETag"].startswith('"') and response["Last-Modified"].endswith("GMT")
    assert response["Content-Disposition"] == f'inline; filename="track-{tone.pk}.wav"'


def test_a_range_is_answered_with_206_and_those_bytes_only(staff, tone):
    data = Path(tone.audio_path).read_bytes()
    response = staff.get(audio_url(tone.pk), headers={"Range": "bytes=100-1099"})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-1099/{len(data)}"
    assert response["Content-Length"] == "1000" and body(response) == data[100:1100]

    tail = staff.get(audio_url(tone.pk), headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and body(tail) == data[-10:]
    assert tail["Content-Range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"


def test_a_range_past_the_end_is_416_with_the_size(staff, tone):
    size = Path(tone.audio_path).stat().st_size
    response = staff.get(audio_url(tone.pk), headers={"Range": f"bytes={size}-"})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"
    assert "not satisfiable" in response.json()["detail"]


def test_conditional_requests(staff, tone):
    first = staff.get(audio_url(tone.pk))
    etag = first["ETag"]
    assert staff.get(audio_url(tone.pk), headers={"If-None-Match": etag}).status_code == 304
    assert staff.get(audio_url(tone.pk), headers={"If-Modified-Since": first["Last-Modified"]}).status_code == 304
    # If-Range naming another version of the file: the whole (new) file, never spliced bytes.
    stale = staff.get(audio_url(tone.pk), headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and len(body(stale)) == Path(tone.audio_path).stat().st_size
    same = staff.get(audio_url(tone.pk), headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and len(body(same)) == 10
    # The file changes on disk: a new ETag, so the browser's copy is not reused.
    soundfile.write(tone.audio_path, np.zeros(8000, dtype=np.float32), 16000)
    assert staff.get(audio_url(tone.pk), headers={"If-None-Match": etag}).status_code == 200


def test_head_sends_the_headers_and_no_body(staff, tone):
    response = staff.head(audio_url(tone.pk), headers={"Range": "bytes=0-99"})
    assert response.status_code == 206 and response["Content-Length"] == "100" and response.content == b""


@pytest.mark.parametrize(("fmt", "extension", "content_type"), [
    ("FLAC", "flac", "audio/flac"), ("OGG", "ogg", "audio/ogg"), ("MP3", "mp3", "audio/mpeg"),
])
def test_content_type_by_format(staff, tone, tmp_path, fmt, extension, content_type):
    path = tmp_path / f"tone.{extension}"
    soundfile.write(str(path), 0.2 * np.sin(np.arange(16000) / 7).astype(np.float32), 16000, format=fmt)
    Track.objects.filter(pk=tone.pk).update(audio_path=str(path))
    response = staff.get(audio_url(tone.pk))
    assert response.status_code == 200 and response["Content-Type"] == content_type
    assert body(response) == path.read_bytes()


def test_missing_corrupt_and_unknown_audio_are_404_with_a_reason(staff, tone, tmp_path):
    Path(tone.audio_path).unlink()
    missing = staff.get(audio_url(tone.pk))
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert "missing on the server" in missing.json()["detail"] and tone.title in missing.json()["detail"]
    assert missing["Cache-Control"] == "no-store"

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 64)
    Track.objects.filter(pk=tone.pk).update(audio_path=str(corrupt))
    answer = staff.get(audio_url(tone.pk))
    assert answer.status_code == 404 and "is corrupt" in answer.json()["detail"]

    Track.objects.filter(pk=tone.pk).update(audio_path=str(tmp_path / "notes.txt"))
    assert "not a served format" in staff.get(audio_url(tone.pk)).json()["detail"]
    assert "no track 999999" in staff.get(audio_url(999999)).json()["detail"]


def test_only_get_and_head(staff, tone):
    assert staff.post(audio_url(tone.pk)).status_code == 405


# --- who may listen ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/listen/", "/listen/?q=reel&seed=1", "audio"])
def test_anonymous_users_and_api_keys_are_sent_to_the_login(client, tone, django_user_model, path):
    """A player key (shipped inside apps) or an analyst key is not a staff session: 302 to the admin login,
    the same as an anonymous request, and never the page or a byte of audio."""
    path = audio_url(tone.pk) if path == "audio" else path
    _, player = api_key_create(name="player app")
    _, analyst = api_key_create(name="analyst", scope="analyst")
    answers = {"anonymous": client.get(path, headers={"Range": "bytes=0-"})}
    for name, key in (("player", player), ("analyst", analyst)):
        answers[name] = client.get(path, headers={"Authorization": f"Api-Key {key}", "Range": "bytes=0-"})
    django_user_model.objects.create_user("listener", password="pw-listener-1")  # not staff
    client.force_login(django_user_model.objects.get(username="listener"))
    answers["not staff"] = client.get(path, headers={"Range": "bytes=0-"})
    for who, response in answers.items():
        assert response.status_code == 302, who
        assert response["Location"].startswith(f"{LOGIN}?next=/listen/"), who
        assert not response.get("Content-Type", "").startswith("audio/"), who


# --- the page (no trained model: vectors written directly) ------------------------------------------------------

def _model(name: str, kind: str, arm: str, tracks: list[Track], rng) -> EmbeddingModel:
    model = EmbeddingModel.objects.create(name=name, kind=kind, dim=8, indexed_at=timezone.now(), active_for_arm=arm,
                                          metrics={"test": {"style_p10": 0.4321, "xinst_style_p10": 0.25}},
                                          checkpoint_path="/nonexistent/model.pt")
    TrackEmbedding.objects.bulk_create(TrackEmbedding(model=model, track=t, embedding=rng.normal(size=8).tolist())
                                       for t in tracks)
    create_hnsw_index(model)
    return model


@pytest.fixture
def small_world(db, tmp_path):
    """25 tone tracks with a kept description each, the last one's file gone; a baseline and a crossmusim model
    with random vectors (the crossmusim one without a checkpoint)."""
    rng = np.random.default_rng(3)
    # tone_track repeats its sound every 12 indices: the length keeps the checksums unique.
    tracks = [tone_track(tmp_path / "tones", i, seconds=1.0 + 0.01 * i) for i in range(25)]
    for track in tracks:
        track.labels = {**track.labels, "instruments": ["violin", "cello"]}
    Track.objects.bulk_update(tracks, ["labels"])
    Path(tracks[-1].audio_path).unlink()
    Description.objects.bulk_create(
        Description(track=t, text=f"a tone number {i}", source="metadata", origin="template:0", kept=True,
                    text_hash=hashlib.sha256(f"a tone number {i}".encode()).hexdigest())
        for i, t in enumerate(tracks))
    baseline = _model("base", "baseline", "baseline", tracks, rng)
    cross = _model("cross", "crossmusim", "crossmusim", tracks, rng)
    return tracks, baseline, cross


def _listed(html: str, column: str) -> list[int]:
    import re

    part = html.split(f'id="column-{column}"', 1)[1].split('class="card column"', 1)[0]
    return [int(x) for x in re.findall(r'<li data-track="(\d+)"', part)]


def test_page_lists_each_arms_knn_marks_shared_and_says_why_not(staff, small_world):
    tracks, baseline, cross = small_world
    seed = tracks[0]
    response = staff.get("/listen/", {"seed": seed.pk})
    assert response.status_code == 200
    html = response.content.decode()
    expected = {arm: [n.track_id for n in nearest_to_track(VectorSpace.of(model), seed.pk, 10)]
                for arm, model in (("baseline", baseline), ("crossmusim", cross))}
    assert _listed(html, "baseline") == expected["baseline"]
    assert _listed(html, "crossmusim") == expected["crossmusim"]
    shared = set(expected["baseline"]) & set(expected["crossmusim"])
    assert html.count('data-shared="1"') == 2 * len(shared)
    assert html.count("also in crossmusim arm") == len(shared) and html.count("also in baseline arm") == len(shared)
    # No checkpoint behind the crossmusim model: no "why", and the page says why not instead of failing.
    assert "no “why”: cross v1: checkpoint /nonexistent/model.pt not found" in html
    assert f'<audio id="seed-audio" controls preload="metadata" src="/listen/audio/{seed.pk}">' in html
    assert 'id="nav-listen"' in html
    # Model cards: the registry's metrics and the arm each serves.
    assert "0.432" in html and "the crossmusim arm" in html and "the baseline arm" in html


def test_page_shows_why_a_track_cannot_play(staff, small_world):
    tracks, _, _ = small_world
    gone = tracks[-1]
    html = staff.get("/listen/", {"seed": gone.pk}).content.decode()
    assert f"Cannot play the seed: track {gone.pk} ({gone.title}): the audio file" in html
    assert "missing on the server" in html
    assert 'id="seed-audio"' not in html


def test_page_bad_parameters_are_messages_not_errors(staff, small_world):
    response = staff.get("/listen/", {"seed": "abc", "model": "-3", "q": "bad\x00query"})
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert "seed must be an id (a positive integer), not 'abc'" in html
    assert "model must be an id (a positive integer), not '-3'" in html
    assert "search:" in html
    unknown = staff.get("/listen/", {"seed": 10**12}).content.decode()
    assert f"no track {10**12} in the catalog" in unknown


def test_page_title_search_and_third_model(staff, small_world):
    tracks, baseline, cross = small_world
    html = staff.get("/listen/", {"q": "tone 1"}).content.decode()
    assert "Titles containing “tone 1”" in html
    # The text search's reason comes through (the crossmusim model has no checkpoint): a message, not a 500.
    assert 'id="text-search-error"' in html and "not found" in html
    titles = html.split('id="title-matches"')[1].split("</ol>")[0]
    assert f'data-track="{tracks[1].pk}"' in titles and f'data-track="{tracks[10].pk}"' in titles
    assert f'data-track="{tracks[2].pk}"' not in titles

    third = _model("other", "baseline", None, tracks, np.random.default_rng(9))
    page = staff.get("/listen/", {"seed": tracks[0].pk, "model": third.pk}).content.decode()
    assert _listed(page, f"model-{third.pk}") == [
        n.track_id for n in nearest_to_track(VectorSpace.of(third), tracks[0].pk, 10)]
    assert f'<option value="{third.pk}" selected>' in page


def test_dashboard_navigation_links_the_listening_room(staff, db):
    html = staff.get("/experiments/").content.decode()
    assert '<a href="/listen/" id="nav-listen">Listening room</a>' in html
