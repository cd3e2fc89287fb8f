"""The web source against a real local HTTP server (no mocks of the client)."""

from __future__ import annotations

import time

import pytest

from recommender.crossmusim.descriptions import TrackInfo, WebConfig, WebFetcher, WebSource
from recommender.crossmusim.descriptions.web import FetchError, decode_html, render_url_templates
from tests.recommender.descriptions_fixtures import LATIN_TEXT, RecordingServer, web_routes


@pytest.fixture
def site():
    server = RecordingServer(web_routes()).start()
    yield server
    server.stop()


@pytest.fixture
def fetcher(tmp_path):
    config = WebConfig(timeout_s=0.5, max_bytes=200_000, min_interval_s=0.0, max_retries=1, backoff_s=0.05,
                       cache_dir=tmp_path / "web")
    client = WebFetcher(config)
    yield client
    client.close()


def test_normal_article_gives_main_text_without_banners(site, fetcher):
    source = WebSource(fetcher)
    track = TrackInfo(1, "The Kesh", urls=(site.base_url + "/article",))
    result = source.fetch(track, source.units(track)[0])
    assert result.ok, result.error
    text = " ".join(d.text for d in result.descriptions)
    assert "lively Irish jig in 6/8" in text
    assert "We use cookies" not in text and "Tunes | About" not in text
    assert all(d.source == "web" and d.origin == site.base_url + "/article" for d in result.descriptions)
    assert result.descriptions[0].details["page_title"] == "The Kesh - a jig"


def test_robots_disallow_is_obeyed_and_robots_fetched_once_per_host(site, fetcher):
    with pytest.raises(FetchError) as error:
        fetcher.fetch(site.base_url + "/private/article")
    assert error.value.reason == "disallowed by robots.txt"
    assert site.count("/private/article") == 0
    fetcher.fetch(site.base_url + "/article")
    fetcher.fetch(site.base_url + "/tunes/The_Kesh")
    assert site.count("/robots.txt") == 1


def test_404_fails_without_retry(site, fetcher):
    with pytest.raises(FetchError) as error:
        fetcher.fetch(site.base_url + "/missing")
    assert error.value.reason == "HTTP 404"
    assert site.count("/missing") == 1


def test_500_then_success_is_retried(site, fetcher):
    page = fetcher.fetch(site.base_url + "/flaky")
    assert page.status == 200 and page.attempts == 2
    assert site.count("/flaky") == 2
    assert "lively Irish jig" in page.html


def test_slow_response_times_out_after_retries(site, fetcher):
    started = time.monotonic()
    with pytest.raises(FetchError) as error:
        fetcher.fetch(site.base_url + "/slow")
    assert error.value.reason == "timeout"
    assert site.count("/slow") == 2  # one try + one retry
    assert time.monotonic() - started < 2.5


def test_huge_body_is_streamed_and_cut_at_the_cap(site, fetcher):
    with pytest.raises(FetchError) as error:
        fetcher.fetch(site.base_url + "/huge")
    assert error.value.reason == "too large"
    time.sleep(0.3)
    assert not site.state.get("huge_completed"), "the client read the whole 50 MB body"
    with pytest.raises(FetchError) as declared:
        fetcher.fetch(site.base_url + "/huge-declared")
    assert declared.value.reason == "too large" and "Content-Length" in declared.value.detail


def test_non_html_is_refused(site, fetcher):
    with pytest.raises(FetchError) as error:
        fetcher.fetch(site.base_url + "/score.pdf")
    assert error.value.reason == "not HTML"
    assert error.value.detail == "application/pdf"


@pytest.mark.parametrize("path", ["/cp1252", "/latin1", "/undeclared"])
def test_non_utf8_pages_are_decoded(site, fetcher, path):
    page = fetcher.fetch(site.base_url + path)
    assert "Café music in the Parisian style" in page.html
    assert "\ufffd" not in page.html
    if path == "/cp1252":
        assert page.encoding == "windows-1252" and "\u201cthe\u201d" in page.html
    if path == "/latin1":
        assert page.encoding == "cp1252"  # WHATWG: latin-1 labels decode as windows-1252
    if path == "/undeclared":
        assert "Très élégante" in page.html


def test_decode_html_detects_undeclared_encoding():
    body = ("<html><body><p>" + LATIN_TEXT + " Très élégante, à écouter au café.</p></body></html>").encode("latin-1")
    text, encoding = decode_html(body, "text/html")
    assert "Très élégante" in text and encoding != "utf-8"


def test_cache_makes_a_second_fetch_send_nothing(site, tmp_path):
    config = WebConfig(timeout_s=2, min_interval_s=0.0, cache_dir=tmp_path / "cache")
    first = WebFetcher(config)
    first.fetch(site.base_url + "/article")
    first.close()
    sent = site.total()
    second = WebFetcher(config)
    page = second.fetch(site.base_url + "/article")
    second.close()
    assert page.from_cache and "lively Irish jig" in page.html
    assert site.total() == sent


def test_per_host_rate_limit_spaces_requests(site, tmp_path):
    fetcher = WebFetcher(WebConfig(timeout_s=2, min_interval_s=0.25, cache_dir=None))
    for path in ("/article", "/tunes/The_Kesh", "/cp1252"):
        fetcher.fetch(site.base_url + path)
    fetcher.close()
    times = sorted(t for path in ("/robots.txt", "/article", "/tunes/The_Kesh", "/cp1252") for t in site.times[path])
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) == 4 and min(gaps) >= 0.22


def test_url_templates_and_metadata_urls_become_units(site, fetcher):
    templates = {"tunes": site.base_url + "/tunes/{title_slug}", "needs_composer": "http://x.invalid/{composer}"}
    track = TrackInfo(7, "The Kesh", urls=(site.base_url + "/article",))
    assert render_url_templates(track, templates) == [("tunes", site.base_url + "/tunes/The_Kesh")]
    source = WebSource(fetcher, templates)
    units = source.units(track)
    assert units == [site.base_url + "/article", site.base_url + "/tunes/The_Kesh"]
    results = [source.fetch(track, unit) for unit in units]
    assert all(r.ok for r in results)


def test_redirects_are_followed_and_robots_checked_on_every_hop(site, fetcher):
    page = fetcher.fetch(site.base_url + "/old-article")
    assert page.final_url == site.base_url + "/article" and "lively Irish jig" in page.html
    with pytest.raises(FetchError) as error:
        fetcher.fetch(site.base_url + "/sneaky")
    assert error.value.reason == "disallowed by robots.txt"
    assert site.count("/private/article") == 0
    with pytest.raises(FetchError) as loop:
        fetcher.fetch(site.base_url + "/loop")
    assert loop.value.reason == "too many redirects"
