"""Reliability round 2 (issue #12, items 11-14 and the smaller defects): hostile provider replies, paths that
leave the import folder, archive bombs, malformed labels CSVs, and awkward images.

Servers run on 127.0.0.1 only; every hostile input is generated in the test (tests/badinputs.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import traceback
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import badinputs
from fakeservers import FakeServer, Reply
from medrag.config import DEFAULT_ALLOWLIST, Settings
from medrag.errors import LibraryError, UnsupportedImageError, WebSearchError
from medrag.imaging import load_image
from medrag.library import IngestReport, ingest_path, iter_folder, read_labels_csv
from medrag.store import Store
from medrag.websearch import SerpApiProvider, TavilyProvider, search_references
from pgsuite import folder_store

KEY = "serp-PRIVATE-KEY-0123456789abcdef"
MiB = 2**20


def _reply(status: int, body: object) -> Reply:
    # Reply(json=None) would send an empty body: a JSON null is sent as text.
    if body is None:
        return Reply(status=status, text="null", headers={"Content-Type": "application/json"})
    return Reply(status=status, json=body)


def _everything_said(exc: BaseException) -> str:
    """The message, the repr and the whole printed traceback (with any chained exception)."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def _no_part_of_the_key(text: str, key: str = KEY, shortest: int = 6) -> bool:
    """True when no run of ``shortest`` or more characters of ``key`` appears in ``text`` (a cut key leaks too)."""
    return not any(key[i : i + shortest] in text for i in range(len(key) - shortest + 1))


# ----------------------------------------------------------------------------- 11: provider replies

_BODIES = badinputs.ODD_JSON_BODIES
_STATUSES = (500, 401, 400, 200)


@pytest.mark.parametrize("status", _STATUSES)
@pytest.mark.parametrize(("kind", "body"), _BODIES, ids=[k for k, _ in _BODIES])
def test_serpapi_odd_json_gives_a_provider_error_without_the_key(status: int, kind: str, body: object) -> None:
    """Before: a 500 whose body is a list ended in AttributeError, chained to a requests error holding the URL
    with ``api_key=...``."""
    handler = lambda req: _reply(status, body)  # noqa: E731
    with FakeServer({"GET /search": handler, "GET /search.json": handler}) as server:
        provider = SerpApiProvider(KEY, allowlist=DEFAULT_ALLOWLIST, base_url=server.url)
        with pytest.raises(WebSearchError) as info:
            provider.search("cardiomegaly", 5)
        assert server.requests and KEY in server.requests[0].raw, "the key really was sent"
    said = _everything_said(info.value)
    assert "SerpAPI" in str(info.value) and "Traceback" not in str(info.value)
    assert (f"HTTP {status}" in str(info.value)) == (status != 200), str(info.value)
    assert KEY not in said and "api_key=" not in said, said


@pytest.mark.parametrize("status", _STATUSES)
@pytest.mark.parametrize(("kind", "body"), _BODIES, ids=[k for k, _ in _BODIES])
def test_tavily_odd_json_gives_a_provider_error_without_the_key(status: int, kind: str, body: object) -> None:
    """Tavily's client fills in a missing "results" list itself, so a 200 JSON object without results is no
    results; anything else is a WebSearchError."""
    with FakeServer({"POST /search": lambda req: _reply(status, body)}) as server:
        provider = TavilyProvider(KEY, allowlist=DEFAULT_ALLOWLIST, base_url=server.url)
        if status == 200 and isinstance(body, dict) and "results" not in body:
            assert provider.search("cardiomegaly", 5) == []
            return
        with pytest.raises(WebSearchError) as info:
            provider.search("cardiomegaly", 5)
    said = _everything_said(info.value)
    assert "Tavily" in str(info.value) and KEY not in said, said


@pytest.mark.parametrize("provider_name", ["serpapi", "tavily"])
def test_server_error_text_is_masked_before_it_is_cut(provider_name: str) -> None:
    """The key sits across the 200-character cut, amid control characters: no piece of it survives."""
    detail = "\x1b[2J" + "x" * 186 + " " + KEY + "\n\x07 and api_key=" + KEY + " tail " * 200
    if provider_name == "serpapi":
        routes = {"GET /search": lambda req: Reply(status=500, json={"error": detail})}
        provider: SerpApiProvider | TavilyProvider = SerpApiProvider(KEY, allowlist=DEFAULT_ALLOWLIST)
    else:
        routes = {"POST /search": lambda req: Reply(status=400, json={"detail": {"error": detail}})}
        provider = TavilyProvider(KEY, allowlist=DEFAULT_ALLOWLIST)
    with FakeServer(routes) as server:
        provider.base_url = server.url
        with pytest.raises(WebSearchError) as info:
            provider.search("cardiomegaly", 5)
    message = str(info.value)
    assert "xxxx" in message, "the server's own text is quoted"
    assert _no_part_of_the_key(_everything_said(info.value)), message
    assert "\x1b" not in message and "\x07" not in message and "\n" not in message
    assert len(message) < 400, len(message)


def test_a_list_500_through_analyze_is_a_clear_web_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: the web stage said "[web failed] AttributeError"; the analysis is still saved."""
    from medrag.analysis import Analysis
    from medrag.workbench import Workbench

    caplog.set_level(logging.DEBUG)
    handler = lambda req: Reply(status=500, json=["internal", "error", f"api_key={KEY}"])  # noqa: E731
    with FakeServer({"GET /search": handler, "GET /search.json": handler}) as server:
        settings = Settings(data_dir=tmp_path / "data", demo_cases=8, web_provider="serpapi",
                            serpapi_api_key=KEY, serpapi_base_url=server.url)
        wb = Workbench(settings)
        wb.ensure_library()
        image = wb.store.cases_frame(limit=1).iloc[0]["image_path"]
        events = list(wb.analyze(Path(image), k=3, web=True))
        assert server.requests
    result = Analysis.fold(events)
    web = result.failures.get("web", "")
    assert "SerpAPI" in web and "HTTP 500" in web and "AttributeError" not in web, result.failures
    assert result.analysis_id
    shown = "\n".join(repr(e) for e in events) + "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in shown and "api_key=internal" not in shown


def test_an_unforeseen_provider_exception_becomes_a_websearch_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The last guard: whatever a provider raises reaches the pipeline as a WebSearchError naming only its type."""

    def explode(self: SerpApiProvider, query: str, max_results: int) -> list[object]:
        raise KeyError(f"https://serpapi.com/search?api_key={KEY}")

    monkeypatch.setattr(SerpApiProvider, "search", explode)
    settings = Settings(data_dir=tmp_path, serpapi_api_key=KEY, web_provider="serpapi")
    with caplog.at_level(logging.DEBUG), pytest.raises(WebSearchError, match="KeyError") as info:
        search_references("cardiomegaly", settings)
    assert KEY not in _everything_said(info.value)
    assert all(KEY not in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- 12: containment


@pytest.fixture()
def env(tmp_path: Path) -> tuple[Settings, Store]:
    settings = Settings(data_dir=tmp_path / "data", image_encoder="classic")
    return settings, folder_store(settings.data_dir)


def _stored_paths(store: Store) -> list[Path]:
    return [Path(p) for p in store.cases_frame()["image_path"]]


def test_openi_image_ids_cannot_leave_the_images_folder(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    """Before: ``parentImage id="../secretdir/private"`` and absolute ids imported files from outside --images."""
    settings, store = env
    images, secret = tmp_path / "images", tmp_path / "secretdir"
    images.mkdir()
    secret.mkdir()
    (images / "CXR1_1.png").write_bytes(badinputs.png_bytes(96, 21))
    (secret / "private.png").write_bytes(badinputs.png_bytes(96, 22))
    (secret / "absolute.png").write_bytes(badinputs.png_bytes(96, 23))
    archive = badinputs.tgz_with_members(tmp_path / "reports.tgz", [
        ("ecgen-radiology/1.xml", badinputs.openi_xml("CXR1", ["CXR1_1"])),
        ("ecgen-radiology/2.xml", badinputs.openi_xml("CXR2", ["../secretdir/private"])),
        ("ecgen-radiology/3.xml", badinputs.openi_xml("CXR3", [str(secret / "absolute")])),
        ("ecgen-radiology/4.xml", badinputs.openi_xml("CXR4", ["../secretdir/private", "CXR1_1"])),
    ])
    report = ingest_path(archive, settings, store, images_dir=images)
    stored = _stored_paths(store)
    assert stored and all(p.resolve().is_relative_to(images.resolve()) for p in stored), stored
    assert report.added == 1
    errors = dict(report.errors)
    assert "escapes the images folder" in errors["Open-i CXR2"]
    assert "absolute path" in errors["Open-i CXR3"]
    assert "escapes the images folder" in errors["Open-i CXR4"], "a refused id is reported even when another is fine"


def test_symlinks_out_of_an_ingest_folder_are_refused(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    """Before: a link inside the folder to a file outside it was imported like any image."""
    settings, store = env
    folder, outside = tmp_path / "lib", tmp_path / "outside"
    (folder / "normal").mkdir(parents=True)
    outside.mkdir()
    (folder / "normal" / "ok.png").write_bytes(badinputs.png_bytes(96, 31))
    (outside / "secret.png").write_bytes(badinputs.png_bytes(96, 32))
    (folder / "normal" / "link.png").symlink_to(outside / "secret.png")
    (folder / "linked-dir").symlink_to(outside, target_is_directory=True)
    (folder / "normal" / "inside.png").symlink_to(folder / "normal" / "ok.png")  # stays inside: allowed
    report = ingest_path(folder, settings, store)
    stored = _stored_paths(store)
    assert report.added == 1 and all(p.resolve().is_relative_to(folder.resolve()) for p in stored), stored
    errors = dict(report.errors)
    link_error = next(m for where, m in errors.items() if where.endswith("link.png"))
    assert "symbolic link that leads outside the library folder" in link_error
    assert any(where.endswith("linked-dir") for where in errors), errors
    # The same link named by a labels CSV row is refused by the same rule.
    (folder / "labels.csv").write_text("image,label\nnormal/link.png,normal\nnormal/ok.png,normal\n")
    csv_report = ingest_path(folder, settings, store, labels_csv=folder / "labels.csv")
    assert any("symbolic link that leads outside" in m for _, m in csv_report.errors), csv_report.errors


def test_a_symlink_loop_in_an_ingest_folder_is_reported_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "ok.png").write_bytes(badinputs.png_bytes(64, 33))
    (folder / "a.png").symlink_to(folder / "b.png")
    (folder / "b.png").symlink_to(folder / "a.png")
    report = IngestReport(source=str(folder))
    assert [i.path.name for i in iter_folder(folder, report) if i.path] == ["ok.png"]
    assert len(report.errors) == 2 and all("loop" in m for _, m in report.errors)


def test_a_parquet_image_path_is_never_opened(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    """Parquet images come from the cells' bytes only; a path in a cell (here /etc/passwd) is not followed."""
    settings, store = env
    path = tmp_path / "nested.parquet"
    path.write_bytes(badinputs.parquet_nested())
    report = ingest_path(path, settings, store)
    assert report.added == 1
    ((where, message),) = report.errors
    assert where.endswith("row 1") and "'path' is not followed" in message


# ----------------------------------------------------------------------------- 13: archive bombs


def test_an_oversized_xml_member_is_refused_before_it_is_read(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    """Before: a small .tgz with one huge XML member was read whole into memory (4 GiB -> 4.4 GB, then an
    OverflowError). Here the member is just over the 64 MiB cap: refused from its header, nothing inflated."""
    from medrag.archive import MAX_XML_MEMBER_BYTES

    settings, store = env
    size = MAX_XML_MEMBER_BYTES + 1
    archive = badinputs.tgz_with_members(tmp_path / "bomb.tgz", [
        ("ecgen-radiology/1.xml", badinputs.openi_xml("CXR1", ["CXR1_1"])),
        ("ecgen-radiology/huge.xml", size),
    ])
    assert archive.stat().st_size < size // 100, "the bomb is small on disk"
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(LibraryError) as info:
            ingest_path(archive, settings, store, images_dir=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    expected = "the archive member 'ecgen-radiology/huge.xml' is 64 MiB (67,108,865 bytes), over the 64 MiB limit"
    assert expected in message, message
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert time.perf_counter() - started < 10
    assert store.count_cases() == 0


def test_the_cli_reports_an_archive_bomb_in_one_line(tmp_path: Path) -> None:
    from medrag.archive import MAX_XML_MEMBER_BYTES
    from medrag.cli import main

    archive = badinputs.tgz_with_members(tmp_path / "bomb.tgz", [("r/huge.xml", MAX_XML_MEMBER_BYTES + 1)])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--data-dir", str(tmp_path / "data"), "ingest", str(archive), "--images", str(tmp_path)])
    assert code == 2 and "Traceback" not in out.getvalue() + err.getvalue()
    assert err.getvalue().startswith("error: ") and "over the 64 MiB limit" in err.getvalue(), err.getvalue()


def test_archive_total_size_and_member_count_are_capped(tmp_path: Path) -> None:
    from medrag.archive import iter_xml_documents

    small = badinputs.openi_xml("CXR1", ["CXR1_1"])
    many = badinputs.tgz_with_members(tmp_path / "many.tgz", [(f"r/{i}.xml", small) for i in range(5)])
    assert len(list(iter_xml_documents(many))) == 5
    with pytest.raises(LibraryError, match="more than 4 members"):
        list(iter_xml_documents(many, max_members=4))
    # Non-XML members count towards the total too: they are inflated while the stream is skipped over.
    padded = badinputs.tgz_with_members(tmp_path / "padded.tgz", [("r/1.xml", small), ("r/blob.bin", 3 * MiB)])
    with pytest.raises(LibraryError, match=r"unpacks to more than 2 MiB \(at the member 'r/blob.bin'\)"):
        list(iter_xml_documents(padded, max_total_bytes=2 * MiB))


def test_an_oversized_xml_file_in_a_reports_folder_is_refused(tmp_path: Path) -> None:
    from medrag.archive import iter_xml_documents

    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "1.xml").write_bytes(badinputs.openi_xml("CXR1", ["CXR1_1"]))
    with (folder / "2.xml").open("wb") as handle:
        handle.truncate(5 * 2**30)  # a sparse 5 GiB file: no disk used
    with pytest.raises(LibraryError, match=r"2\.xml' is 5 GiB, over the 64 MiB limit"):
        list(iter_xml_documents(folder))


# ----------------------------------------------------------------------------- 14: labels CSV


def test_labels_csv_long_cell_and_unbalanced_quote(tmp_path: Path) -> None:
    """Before: ``_csv.Error: field larger than field limit (131072)`` with a traceback."""
    from medrag.library import MAX_CSV_FIELD_CHARS

    path = tmp_path / "labels.csv"
    path.write_bytes(badinputs.csv_long_field(200_000))
    rows = read_labels_csv(path)
    assert [len(r["report"]) for r in rows] == [200_000, 5], "a 200,000-character report is read"
    path.write_bytes(badinputs.csv_long_field(MAX_CSV_FIELD_CHARS + 1))
    with pytest.raises(LibraryError) as info:
        read_labels_csv(path)
    assert f"labels CSV {path} line 2: a cell is longer than 4,194,304 characters" in str(info.value)
    path.write_bytes(b"image,label\nb.png,\"two\nlines\"\n" + badinputs.CSV_UNBALANCED_QUOTE.split(b"\n", 1)[1])
    with pytest.raises(LibraryError, match=r"line 4: a double quote opened there is never closed") as info:
        read_labels_csv(path)
    assert "_csv.Error" not in str(info.value)
    import csv

    assert csv.field_size_limit() == 131_072, "the process-wide csv limit is restored"


# ----------------------------------------------------------------------------- smaller: DICOM windows


@pytest.mark.parametrize(("center", "width"), [
    ("2048", "NaN"), ("2048", "inf"), ("2048", "-inf"), ("2048", "1e308"), ("NaN", "400"), ("1e308", "400"),
    ("2048", "-100"),
])
def test_a_dicom_window_that_is_not_a_number_is_ignored(center: str, width: str) -> None:
    """Before: NaN, inf and 1e308 made a valid image "blank" (a width of -100 was already ignored)."""
    plain = load_image(badinputs.dicom_bytes())
    image = load_image(badinputs.dicom_window(center, width))
    warnings = " ".join(image.meta["warnings"])
    assert "blank image" not in warnings and "window/VOI LUT is invalid and was ignored" in warnings, warnings
    assert image.meta["window"] is None
    assert np.array_equal(image.pixels, plain.pixels), "the image is decoded as if it had no window"
    assert float(image.pixels.std()) > 0.1


def test_a_sane_dicom_window_is_still_applied() -> None:
    image = load_image(badinputs.dicom_window("1000", "800"))
    assert image.meta["window"] == [1000.0, 800.0] and not image.meta["warnings"]


# ----------------------------------------------------------------------------- smaller: palette, 12-bit JPEG


@pytest.mark.parametrize("table_bytes", [0, 2, 100, 510])
def test_a_short_dicom_palette_is_a_clear_error(table_bytes: int) -> None:
    """Before: "Alias 'uint0' was removed in NumPy 2.0" (or "data type 'uint3' not understood")."""
    with pytest.raises(UnsupportedImageError) as info:
        load_image(badinputs.dicom_palette(table_bytes))
    message = str(info.value)
    assert "palette colour table is damaged" in message and f"has {table_bytes} bytes" in message
    assert "uint" not in message and "NumPy" not in message


def test_a_complete_dicom_palette_still_decodes() -> None:
    image = load_image(badinputs.dicom_palette(512))
    assert image.meta["converted_from_rgb"] and float(image.pixels.std()) > 0.05


def test_a_12_bit_jpeg_is_named_as_such() -> None:
    """Before: "starts like a JPEG file but its header is damaged or cut short"."""
    with pytest.raises(UnsupportedImageError) as info:
        load_image(badinputs.jpeg_12bit(), name="deep.jpg")
    message = str(info.value)
    assert "deep.jpg is a 12-bit JPEG" in message and "PNG" in message and "damaged" not in message


# ----------------------------------------------------------------------------- smaller: a 49-megapixel PNG


@pytest.mark.parametrize("make", [badinputs.big_png, badinputs.big_jpeg], ids=["png", "jpeg"])
def test_a_49_megapixel_image_is_decoded_at_the_working_size(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Before: every full-size float copy was made (a 7000x7000 8-bit PNG: 426 MB of RSS for load_image alone,
    ~400 MiB traced by numpy). Now the image is reduced in its own 8-bit mode while it is decoded."""
    from medrag.imaging.limits import MAX_WORKING_PIXELS

    path = tmp_path / "big.img"
    path.write_bytes(make())
    tracemalloc.start()
    try:
        image = load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.shape == (3500, 3500) and image.pixels.size <= MAX_WORKING_PIXELS
    assert (image.meta["original_width"], image.meta["original_height"]) == (7000, 7000)
    assert any("reduced from 7000x7000 to 3500x3500" in w for w in image.meta["warnings"]), image.meta["warnings"]
    assert not any("blank" in w for w in image.meta["warnings"])
    assert peak < 120 * MiB, f"traced peak {peak / MiB:.0f} MiB"


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "1", "I;16", "LA", "F"])
def test_every_pillow_mode_is_reduced_to_the_working_size(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    import medrag.imaging.limits as limits

    monkeypatch.setattr(limits, "MAX_WORKING_PIXELS", 64 * 64)
    grey = badinputs.cxr_like(128, 5)
    img = Image.fromarray(grey)
    if mode == "I;16":
        img = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode == "F":
        img = Image.fromarray(grey.astype(np.float32) / 255.0, mode="F")
    elif mode != "L":
        img = img.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format="TIFF" if mode == "F" else "PNG")
    image = load_image(buffer.getvalue())
    assert image.shape == (64, 64) and image.meta["original_width"] == 128
    assert image.meta["mode"] == mode
    if mode == "P":
        assert any("palette image" in w for w in image.meta["warnings"])


def test_images_within_the_working_size_are_not_reduced() -> None:
    from medrag.imaging.limits import MAX_WORKING_PIXELS, working_factor

    assert working_factor(4096, 4096) == 1 and working_factor(4300, 3500) == 1 and working_factor(2000, 8000) == 1
    assert working_factor(7000, 7000) == 2 and working_factor(4097, 4097) == 2 and working_factor(7071, 7071) == 2
    for width, height in ((7000, 7000), (4097, 4096), (12000, 4000), (50_000, 1000)):
        factor = working_factor(width, height)
        assert -(-width // factor) * -(-height // factor) <= MAX_WORKING_PIXELS
        assert -(-width // (factor - 1)) * -(-height // (factor - 1)) > MAX_WORKING_PIXELS
    image = load_image(badinputs.png_bytes(256, 3))
    assert "original_width" not in image.meta


# ----------------------------------------------------------------------------- smaller: nested parquet


def test_nested_parquet_columns_are_stored_as_json(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    """Before: lists and structs became Python repr text ("['Small left effusion.', ...]") or were dropped."""
    settings, store = env
    path = tmp_path / "nested.parquet"
    path.write_bytes(badinputs.parquet_nested())
    assert ingest_path(path, settings, store).added == 1
    case = store.cases_frame().iloc[0]
    assert case["label"] == "effusion + edema"
    assert 'FINDINGS: ["Small left effusion.", "Interstitial edema."]' in case["report"]
    extra = json.loads(case["extra"])
    assert extra["meta"] == {"age": 61, "tags": ["portable", "ICU"], "score": None}
    assert extra["acquired"] == "2020-01-02" and "mask" not in extra
    assert "['" not in case["report"] + case["extra"]

