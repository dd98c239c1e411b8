"""Web references: allowlist, sanitising, caching and errors against local SerpAPI/Tavily-shaped servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

import pytest

from fakeservers import FakeServer, Reply, dead_url
from medrag.config import DEFAULT_ALLOWLIST, Settings
from medrag.errors import StoreError, WebSearchError
from medrag.websearch import (
    NO_KEY_STATUS,
    DictWebCache,
    SerpApiProvider,
    TavilyProvider,
    WebSearchProvider,
    allowed_domain,
    build_provider,
    cache_key,
    install_log_redaction,
    search_references,
    site_query,
    strip_html,
    web_query_for,
)

SERP_KEY = "serp-SECRET-key-123456"
TAVILY_KEY = "tvly-SECRET-key-abcdef"

# Real-world shapes: SerpAPI google organic_results; Tavily results + images.
SERP_PAYLOAD = {
    "search_metadata": {"status": "Success"},
    "organic_results": [
        {
            "position": 1,
            "title": "<b>Cardiomegaly</b> &amp; heart size | Radiopaedia",
            "link": "https://radiopaedia.org/articles/cardiomegaly",
            "snippet": "The cardiothoracic ratio is &gt; 0.5<script>alert('x')</script> on a PA film.",
            "thumbnail": "https://radiopaedia.org/images/cardiomegaly.png",
        },
        {
            "title": "PubMed: cardiomegaly on chest radiographs",
            "link": "https://pubmed.ncbi.nlm.nih.gov/12345/",
            "snippet": "A <i>retrospective</i> study.",
            "thumbnail": "http://pubmed.ncbi.nlm.nih.gov/insecure.png",
        },
        {"title": "Evil lookalike", "link": "https://nih.gov.evil.com/cardiomegaly", "snippet": "phish"},
        {"title": "Evil suffix", "link": "https://evilnih.gov/x", "snippet": "phish"},
        {"title": "Script link", "link": "javascript:alert(document.cookie)//nih.gov", "snippet": "x"},
        {"title": "Data link", "link": "data:text/html,<script>alert(1)</script>", "snippet": "x"},
        {"title": "Credentials trick", "link": "https://nih.gov@evil.com/", "snippet": "x"},
        {"title": "Blog", "link": "https://someblog.example.com/cardiomegaly", "snippet": "not trusted"},
        {
            "title": "MedlinePlus enlarged heart",
            "link": "http://medlineplus.gov/ency/article/007279.htm",
            "snippet": "Enlarged heart",
            "thumbnail": "https://evil.com/tracker.png",
        },
        {"title": "Radiopaedia duplicate", "link": "https://radiopaedia.org/articles/cardiomegaly/", "snippet": ""},
        "not a dict",
    ],
}

TAVILY_PAYLOAD = {
    "query": "chest x-ray cardiomegaly radiology",
    "images": [
        {"url": "https://evil.com/a.png", "description": "bad"},
        "http://radiopaedia.org/insecure.png",
        {"url": "https://prod-images.radiopaedia.org/cardio.jpg", "description": "cardiomegaly"},
    ],
    "results": [
        {
            "title": "Cardiomegaly | Radiology Reference Article | Radiopaedia.org",
            "url": "https://radiopaedia.org/articles/cardiomegaly",
            "content": "Cardiomegaly <em>refers</em> to an enlarged heart&nbsp;silhouette.",
            "score": 0.9,
        },
        {"title": "Lookalike", "url": "https://radiopaedia.org.evil.net/a", "content": "x", "score": 0.8},
        {"title": "FTP", "url": "ftp://nih.gov/file", "content": "x", "score": 0.7},
        {
            "title": "Merck",
            "url": "https://www.merckmanuals.com/professional/x",
            "content": "Heart failure",
            "score": 0.6,
        },
    ],
}


def serp_routes(reply: Reply) -> dict:
    # serpapi.Client calls /search; the documented REST path is /search.json.
    handler = lambda req: reply  # noqa: E731
    return {"GET /search": handler, "GET /search.json": handler}


@pytest.fixture()
def serp_server() -> Iterator[FakeServer]:
    with FakeServer(serp_routes(Reply(json=SERP_PAYLOAD))) as server:
        yield server


@pytest.fixture()
def tavily_server() -> Iterator[FakeServer]:
    with FakeServer({"POST /search": lambda req: Reply(json=TAVILY_PAYLOAD)}) as server:
        yield server


def serp_settings(tmp_path, url: str, **kw) -> Settings:
    return Settings(data_dir=tmp_path, serpapi_api_key=SERP_KEY, serpapi_base_url=url, **kw)


# ---------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://pubmed.ncbi.nlm.nih.gov/123/", "nih.gov"),
        ("https://NIH.GOV./x", "nih.gov"),
        ("http://radiopaedia.org:8080/a", "radiopaedia.org"),
        ("https://nih.gov.evil.com/", None),
        ("https://evilnih.gov/", None),
        ("https://nih.gov@evil.com/", None),
        ("https://evil.com\\@nih.gov/", None),
        ("javascript:alert(1)//nih.gov", None),
        ("data:text/html;base64,AAAA", None),
        ("ftp://nih.gov/x", None),
        ("//nih.gov/x", None),
        ("https://nih .gov/x", None),
        ("https://nih.gov:99999/x", None),
        ("https://xn--nh-xja.gov/", None),
        ("https://nіh.gov/", None),  # Cyrillic і
        ("", None),
    ],
)
def test_allowed_domain(url: str, expected: str | None) -> None:
    assert allowed_domain(url, DEFAULT_ALLOWLIST) == expected


def test_strip_html_removes_tags_scripts_and_decodes_entities() -> None:
    text = strip_html("<p>Heart&nbsp;size <b>&gt;</b> 0.5</p><script>alert('x')</script><style>p{}</style>\u202eok")
    assert text == "Heart size > 0.5 ok"
    assert strip_html("a" * 1000, max_chars=50).endswith("…")
    assert len(strip_html("a" * 1000, max_chars=50)) == 50


def test_site_query_uses_minimal_allowlist_within_google_word_limit() -> None:
    query = site_query("chest x-ray cardiomegaly", DEFAULT_ALLOWLIST)
    assert "site:nih.gov" in query and "site:ncbi.nlm.nih.gov" not in query
    assert query.startswith("chest x-ray cardiomegaly (site:radiopaedia.org OR")
    assert len(query.split()) <= 32
    long = site_query(" ".join(f"w{i}" for i in range(28)), DEFAULT_ALLOWLIST)
    assert len(long.split()) <= 32 and "site:radiopaedia.org" in long


def test_web_query_for_builds_reference_queries() -> None:
    assert web_query_for("Cardiomegaly") == "chest x-ray cardiomegaly radiology"
    assert web_query_for("Cardiomegaly with small left pleural effusion") == (
        "chest x-ray cardiomegaly pleural effusion radiology"
    )
    assert web_query_for("No acute cardiopulmonary abnormality") == "normal chest x-ray radiology"
    query = web_query_for("Pneumothorax", "What does a tension pneumothorax look like on a CXR? site:evil.com")
    assert "site:" not in query and "evil" not in query
    assert query.startswith("chest x-ray pneumothorax tension") and query.endswith("radiology")
    assert web_query_for("", "") == "chest x-ray radiology"
    assert web_query_for("No finding", "is the heart enlarged?") == "chest x-ray normal heart enlarged radiology"


def test_cache_key_depends_on_provider_query_limit_and_allowlist() -> None:
    base = cache_key("serpapi", "  Chest X-ray  Cardiomegaly ", DEFAULT_ALLOWLIST, 5)
    assert base == cache_key("serpapi", "chest x-ray cardiomegaly", tuple(reversed(DEFAULT_ALLOWLIST)), 5)
    assert base != cache_key("tavily", "chest x-ray cardiomegaly", DEFAULT_ALLOWLIST, 5)
    assert base != cache_key("serpapi", "chest x-ray cardiomegaly", ("nih.gov",), 5)
    assert base != cache_key("serpapi", "chest x-ray cardiomegaly", DEFAULT_ALLOWLIST, 3)


# ---------------------------------------------------------------- SerpAPI


def test_serpapi_filters_sanitises_and_biases_query(serp_server: FakeServer) -> None:
    provider = SerpApiProvider(SERP_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=serp_server.url)
    results = provider.search("chest x-ray cardiomegaly radiology", 10)

    assert [r.url for r in results] == [
        "https://radiopaedia.org/articles/cardiomegaly",
        "https://pubmed.ncbi.nlm.nih.gov/12345/",
        "http://medlineplus.gov/ency/article/007279.htm",
    ]
    first, pubmed, medline = results
    assert first.title == "Cardiomegaly & heart size | Radiopaedia"
    assert first.snippet == "The cardiothoracic ratio is > 0.5 on a PA film."
    assert first.image_url == "https://radiopaedia.org/images/cardiomegaly.png"
    assert first.domain == "radiopaedia.org" and first.provider == "serpapi"
    assert pubmed.snippet == "A retrospective study." and pubmed.image_url == ""  # http image dropped
    assert medline.image_url == ""  # image from a non-allowlisted domain dropped

    (request,) = serp_server.requests
    assert request.query["engine"] == ["google"]
    assert request.query["api_key"] == [SERP_KEY]
    q = request.query["q"][0]
    assert q.startswith("chest x-ray cardiomegaly radiology (") and "site:radiopaedia.org" in q


def test_serpapi_respects_max_results(serp_server: FakeServer) -> None:
    provider = SerpApiProvider(SERP_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=serp_server.url)
    assert len(provider.search("cardiomegaly", 1)) == 1


def test_serpapi_no_results_error_is_empty_list(tmp_path) -> None:
    payload = {"search_metadata": {}, "error": "Google hasn't returned any results for this query."}
    with FakeServer(serp_routes(Reply(json=payload))) as server:
        provider = SerpApiProvider(SERP_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=server.url)
        assert provider.search("zzzz", 5) == []


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(status=401, json={"error": f"Invalid API key {SERP_KEY}."}), "HTTP 401"),
        (Reply(status=500, text=f"internal error for api_key={SERP_KEY}"), "HTTP 500"),
        (Reply(text="{not json", headers={"Content-Type": "application/json"}), "not a JSON object"),
        (Reply(json=["a", "list"]), "not a JSON object"),
        (Reply(json={"organic_results": {"a": 1}}), "malformed"),
        (Reply(json={"error": "Your account has run out of searches."}), "run out of searches"),
    ],
)
def test_serpapi_errors_are_websearch_errors_without_key(reply: Reply, expected: str) -> None:
    with FakeServer(serp_routes(reply)) as server:
        provider = SerpApiProvider(SERP_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=server.url)
        with pytest.raises(WebSearchError) as info:
            provider.search("cardiomegaly", 5)
    message = str(info.value)
    assert expected in message
    assert SERP_KEY not in message and SERP_KEY not in repr(info.value)
    assert info.value.__cause__ is None  # the requests error (whose URL has the key) is not chained


def test_serpapi_timeout_and_dead_port() -> None:
    with FakeServer(serp_routes(Reply(json=SERP_PAYLOAD, delay_s=5))) as server:
        provider = SerpApiProvider(SERP_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=server.url, timeout=(1.0, 0.3))
        with pytest.raises(WebSearchError, match="did not answer within 0.3 s") as info:
            provider.search("cardiomegaly", 5)
        assert SERP_KEY not in str(info.value)
    provider = SerpApiProvider(SERP_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=dead_url(), timeout=(1.0, 1.0))
    with pytest.raises(WebSearchError, match="Cannot connect") as info:
        provider.search("cardiomegaly", 5)
    assert SERP_KEY not in str(info.value)


# ---------------------------------------------------------------- Tavily


def test_tavily_filters_sanitises_and_restricts_domains(tavily_server: FakeServer) -> None:
    provider = TavilyProvider(TAVILY_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=tavily_server.url)
    results = provider.search("chest x-ray   cardiomegaly", 5)

    assert [r.url for r in results] == [
        "https://radiopaedia.org/articles/cardiomegaly",
        "https://www.merckmanuals.com/professional/x",
    ]
    radiopaedia, merck = results
    assert radiopaedia.snippet == "Cardiomegaly refers to an enlarged heart silhouette."
    assert radiopaedia.image_url == "https://prod-images.radiopaedia.org/cardio.jpg"
    assert merck.domain == "merckmanuals.com" and merck.image_url == "" and merck.provider == "tavily"

    (request,) = tavily_server.requests
    assert request.headers["authorization"] == f"Bearer {TAVILY_KEY}"
    body = request.json()
    assert body["query"] == "chest x-ray cardiomegaly"
    assert "nih.gov" in body["include_domains"] and "ncbi.nlm.nih.gov" not in body["include_domains"]
    assert body["include_images"] is True


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(status=401, json={"detail": {"error": "Unauthorized: missing or invalid API key."}}), "API key"),
        (Reply(status=432, json={"detail": {"error": "plan limit"}}), "API key"),
        (Reply(status=429, json={"detail": {"error": "slow down"}}), "usage limit"),
        (Reply(status=500, text="boom"), "HTTP 500"),
        (Reply(text="<html>oops</html>", headers={"Content-Type": "application/json"}), "malformed"),
        (Reply(json=[1, 2, 3]), "malformed"),
        (Reply(json={"results": "nope"}), "malformed"),
    ],
)
def test_tavily_errors_are_websearch_errors_without_key(reply: Reply, expected: str) -> None:
    with FakeServer({"POST /search": lambda req: reply}) as server:
        provider = TavilyProvider(TAVILY_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=server.url)
        with pytest.raises(WebSearchError) as info:
            provider.search("cardiomegaly", 5)
    assert expected in str(info.value)
    assert TAVILY_KEY not in str(info.value)


def test_tavily_timeout_and_dead_port() -> None:
    with FakeServer({"POST /search": lambda req: Reply(json=TAVILY_PAYLOAD, delay_s=5)}) as server:
        provider = TavilyProvider(TAVILY_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=server.url, timeout=0.3)
        with pytest.raises(WebSearchError, match="did not answer"):
            provider.search("cardiomegaly", 5)
    provider = TavilyProvider(TAVILY_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=dead_url(), timeout=1.0)
    with pytest.raises(WebSearchError, match="Cannot connect") as info:
        provider.search("cardiomegaly", 5)
    assert TAVILY_KEY not in str(info.value)


def test_providers_refuse_empty_keys() -> None:
    # TavilyClient would otherwise fall back to keyless mode and call out.
    with pytest.raises(WebSearchError, match="TAVILY_API_KEY"):
        TavilyProvider("", allowlist=DEFAULT_ALLOWLIST)
    with pytest.raises(WebSearchError, match="SERPAPI_API_KEY"):
        SerpApiProvider("", allowlist=DEFAULT_ALLOWLIST)


# ---------------------------------------------------------------- provider choice, status, cache


def test_build_provider_auto_prefers_serpapi_then_tavily(tmp_path) -> None:
    both = Settings(data_dir=tmp_path, serpapi_api_key="a", tavily_api_key="b")
    assert isinstance(build_provider(both), SerpApiProvider)
    assert isinstance(build_provider(both.with_overrides(web_provider="tavily")), TavilyProvider)
    assert isinstance(build_provider(Settings(data_dir=tmp_path, tavily_api_key="b")), TavilyProvider)
    assert build_provider(Settings(data_dir=tmp_path)) is None
    assert build_provider(both.with_overrides(web_provider="off")) is None
    assert build_provider(Settings(data_dir=tmp_path, tavily_api_key="b", web_provider="serpapi")) is None
    assert isinstance(build_provider(both), WebSearchProvider)
    assert SERP_KEY not in repr(build_provider(serp_settings(tmp_path, "http://127.0.0.1:1")))


def test_search_references_without_key_is_off_and_silent(tmp_path) -> None:
    results, status = search_references("cardiomegaly", Settings(data_dir=tmp_path))
    assert results == [] and status == NO_KEY_STATUS
    results, status = search_references("x", Settings(data_dir=tmp_path, serpapi_api_key="k", web_provider="off"))
    assert results == [] and "off" in status


def test_search_references_uses_cache_without_second_http_call(tmp_path, serp_server: FakeServer) -> None:
    settings = serp_settings(tmp_path, serp_server.url)
    cache = DictWebCache()
    first, status1 = search_references("chest x-ray cardiomegaly radiology", settings, cache)
    second, status2 = search_references("Chest X-ray   cardiomegaly radiology", settings, cache)

    assert len(serp_server.requests) == 1
    assert status1 == "3 results from serpapi" and status2 == "3 results from serpapi (cached)"
    assert second == first and len(cache) == 1

    # Another allowlist is another cache entry (and the stricter list filters the answer).
    narrow = settings.with_overrides(allowlist=("radiopaedia.org",))
    third, status3 = search_references("chest x-ray cardiomegaly radiology", narrow, cache)
    assert len(serp_server.requests) == 2 and status3 == "1 result from serpapi"
    assert [r.domain for r in third] == ["radiopaedia.org"]


def test_cached_results_are_resanitised(tmp_path, serp_server: FakeServer) -> None:
    settings = serp_settings(tmp_path, serp_server.url)
    cache = DictWebCache()
    key = cache_key("serpapi", "q", settings.allowlist, settings.web_max_results)
    good = {
        "title": "<b>Ok</b>",
        "url": "https://nih.gov/a",
        "domain": "nih.gov",
        "snippet": "s",
        "provider": "serpapi",
    }
    bad = dict(good, url="javascript:alert(1)")
    cache.put(key, "serpapi", [good, bad])
    results, status = search_references("q", settings, cache)
    assert [r.url for r in results] == ["https://nih.gov/a"] and results[0].title == "Ok"
    assert status.endswith("(cached)") and serp_server.requests == []


class _BrokenCache:
    def get(self, key: str) -> list[dict] | None:
        raise StoreError("database is locked")

    def put(self, key: str, provider: str, results: list[dict]) -> None:
        raise StoreError("database is locked")


def test_broken_cache_does_not_stop_the_search(tmp_path, serp_server: FakeServer) -> None:
    results, status = search_references("cardiomegaly", serp_settings(tmp_path, serp_server.url), _BrokenCache())
    assert len(results) == 3 and status == "3 results from serpapi (cache unavailable)"


def test_search_references_errors_propagate_as_websearch_error(tmp_path) -> None:
    with FakeServer(serp_routes(Reply(status=503, json={"error": "Service unavailable"}))) as server:
        cache = DictWebCache()
        with pytest.raises(WebSearchError, match="HTTP 503"):
            search_references("cardiomegaly", serp_settings(tmp_path, server.url), cache)
    assert len(cache) == 0


def test_results_round_trip_through_cache_dicts(serp_server: FakeServer) -> None:
    provider = SerpApiProvider(SERP_KEY, allowlist=DEFAULT_ALLOWLIST, base_url=serp_server.url)
    results = provider.search("cardiomegaly", 5)
    assert json.loads(json.dumps([asdict(r) for r in results]))[0]["url"] == results[0].url


def test_log_redaction_is_installed_by_providers_not_by_import(caplog: pytest.LogCaptureFixture) -> None:
    """urllib3 logs SerpAPI's URL (key in the query string) at DEBUG: building a provider masks it, importing
    does not."""
    import logging
    import subprocess
    import sys

    code = "import logging, medrag.websearch; print(len(logging.getLogger('urllib3.connectionpool').filters))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "0"
    )
    SerpApiProvider(SERP_KEY, allowlist=DEFAULT_ALLOWLIST)
    install_log_redaction()  # idempotent: still one filter
    logger = logging.getLogger("urllib3.connectionpool")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.debug('"GET /search?q=x&api_key=%s&num=10 HTTP/1.1" 200', SERP_KEY)
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert messages == ['"GET /search?q=x&api_key=***&num=10 HTTP/1.1" 200']
