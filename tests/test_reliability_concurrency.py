"""Concurrency: 8 app sessions (threads) sharing one Workbench, and a CLI ingest against the data folder
of a running app process (DuckDB lets one process hold the file at a time: both must take turns)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leakscan import portable_sql
from medrag import events as ev
from medrag.config import Settings
from pgsuite import store_env

REPO = Path(__file__).resolve().parents[1]
SESSIONS, PER_SESSION = 8, 50


@pytest.fixture(scope="module")
def shared_workbench(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A Workbench over a 40-case phantom library, indexes built (image and text) before the sessions start."""
    from medrag.workbench import Workbench

    settings = Settings(data_dir=tmp_path_factory.mktemp("concurrency"), demo_cases=40, web_provider="off")
    wb = Workbench(settings)
    wb.ensure_library()
    wb.ensure_index("text")
    return wb


def _session(wb, number: int, cases: list[tuple[str, str]], out: dict, errors: list) -> None:  # type: ignore[no-untyped-def]
    """One app session: PER_SESSION analyses (images by path and by bytes, and text questions)."""
    for i in range(PER_SESSION):
        case_id, path = cases[(number * PER_SESSION + i) % len(cases)]
        name = f"s{number}-a{i}"
        try:
            if i % 5 == 4:
                events = wb.analyze(
                    None, question=f"Is there cardiomegaly on this chest x-ray? ({name})", name=name, web=False
                )
                expected = ""
            elif i % 2:
                events = wb.analyze(Path(path).read_bytes(), name=name, web=False)
                expected = case_id
            else:
                events = wb.analyze(Path(path), name=name, web=False)
                expected = case_id
            saved = failed = None
            for event in events:
                if isinstance(event, ev.AnalysisSaved):
                    saved = event.analysis_id
                elif isinstance(event, ev.StageFailed):
                    failed = f"{event.stage}: {event.message}"
            if failed or saved is None:
                errors.append(f"{name}: {failed or 'not saved'}")
            else:
                out[name] = (saved, expected)
        except Exception as exc:  # a session must never see a raw exception
            errors.append(f"{name}: {type(exc).__name__}: {exc}")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_eight_sessions_fifty_analyses_each(shared_workbench) -> None:  # type: ignore[no-untyped-def]
    wb = shared_workbench
    frame = wb.store.cases_frame()
    cases = list(zip(frame["case_id"], frame["image_path"], strict=True))
    before = wb.store.count_analyses()
    out: dict[str, tuple[int, str]] = {}
    errors: list[str] = []
    threads = [
        threading.Thread(target=_session, args=(wb, n, cases, out, errors), name=f"session-{n}")
        for n in range(SESSIONS)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=400)
    seconds = time.perf_counter() - started
    assert not any(t.is_alive() for t in threads), "a session hung"
    total = SESSIONS * PER_SESSION
    print(f"\n{total} analyses in {seconds:.1f} s ({total / seconds:.1f}/s), {len(errors)} errors")
    kinds = Counter(e.split(": ", 1)[1].split(":")[0][:60] for e in errors)
    assert errors == [], f"{len(errors)} failed analyses by kind {dict(kinds)}; first: {errors[:3]}"
    assert len(out) == total
    ids = [saved for saved, _ in out.values()]
    assert len(set(ids)) == total, "analysis ids are unique"
    assert wb.store.count_analyses() == before + total
    with wb.store.cursor() as cur:
        rows = cur.execute(portable_sql(
            wb.store, "SELECT id, input_name, image_hash, reasoning, neighbours, findings, errors FROM analyses "
            f"WHERE id IN ({', '.join('?' for _ in ids)})"), ids,
        ).fetchall()
    assert len(rows) == total, "every saved id is in the table"
    for row_id, input_name, image_hash, reasoning, neighbours, findings, errs in rows:
        saved, expected = out[input_name]
        assert saved == row_id, f"{input_name} saved as {saved} but row {row_id} carries its name"
        assert reasoning.strip(), f"row {row_id} has no reasoning"
        parsed = json.loads(neighbours)
        assert isinstance(parsed, list) and parsed and all("case_id" in n for n in parsed)
        assert isinstance(json.loads(findings), dict) and json.loads(errs) == []
        if expected:
            assert image_hash == expected, f"row {row_id} holds another session's image"
    assert Counter(name.split("-")[0] for name in out) == {f"s{n}": PER_SESSION for n in range(SESSIONS)}


APP_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from medrag.config import load_settings
    from medrag.workbench import Workbench
    from medrag import events as ev

    data_dir, stop_file, out_file, probe_file = sys.argv[1:5]
    # As the app does: the environment decides the store (MEDRAG_DATABASE_URL under make test-postgres).
    wb = Workbench(load_settings(data_dir=Path(data_dir), web_provider="off"))
    frame = wb.store.cases_frame()
    paths = list(frame["image_path"])
    done, failures, i, probe = [], [], 0, None
    for event in wb.analyze(Path(paths[0]), name="warm-up", web=False, save=False):
        pass  # load the models first: a real app is warm before a user imports
    Path(out_file + ".ready").write_text("ready")
    while not Path(stop_file).exists():
        if probe is None and Path(probe_file).exists():
            # A user of the running app analyses an image the CLI has just imported: it is that case (an analysis
            # leaves a library film out of its own neighbours), and the running app's search finds it first.
            from medrag.analysis import Analysis
            from medrag.imaging import load_image
            image_path = Path(Path(probe_file).read_text())
            analysed = Analysis.fold(wb.analyze(image_path, name="probe", web=False, save=False), into=Analysis())
            probe = {"case_id": analysed.case_id, "neighbours": [n.case_id for n in analysed.neighbours],
                     "search": [[n.case_id, n.score] for n in wb.search_image(load_image(image_path), 5)]}
            Path(out_file + ".probed").write_text("done")
            continue
        t0 = time.time()
        saved = None
        try:
            for event in wb.analyze(Path(paths[i % len(paths)]), name=f"app-{i}", web=False):
                if isinstance(event, ev.AnalysisSaved):
                    saved = event.analysis_id
                elif isinstance(event, ev.StageFailed):
                    failures.append(f"{event.stage}: {event.message}")
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        if saved is not None:
            done.append([t0, time.time(), saved])
        i += 1
    Path(out_file).write_text(json.dumps({"done": done, "failures": failures, "probe": probe}))
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}


def _wait_for(path: Path, app: subprocess.Popen, seconds: float, what: str) -> None:  # type: ignore[type-arg]
    deadline = time.time() + seconds
    while not path.exists():
        assert app.poll() is None, app.stderr.read().decode()[-3000:] if app.stderr else "app died"
        assert time.time() < deadline, f"the app process did not {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ingest_during_app(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """An app process analysing in a loop; a CLI ingest of 60 new images meanwhile; then a probe analysis."""
    from medrag.imaging import load_image
    from medrag.phantoms import generate_phantom
    from medrag.workbench import Workbench

    tmp_path = tmp_path_factory.mktemp("app-and-cli")
    settings = Settings(data_dir=tmp_path / "data", demo_cases=24, web_provider="off")
    Workbench(settings).ensure_library()
    folder = tmp_path / "incoming" / "normal"
    folder.mkdir(parents=True)
    for i in range(60):
        Image.fromarray(np.round(generate_phantom(frozenset(), 900 + i, size=96) * 255).astype(np.uint8)).save(
            folder / f"{i}.png"
        )
    script = tmp_path / "app.py"
    script.write_text(APP_SCRIPT)
    stop, out, probe = tmp_path / "stop", tmp_path / "app.json", tmp_path / "probe"
    app = subprocess.Popen([sys.executable, str(script), str(settings.data_dir), str(stop), str(out), str(probe)],
                           cwd=REPO, env={**_env(), **store_env(settings.data_dir)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        _wait_for(Path(str(out) + ".ready"), app, 180, "start")
        time.sleep(2.0)  # let it serve a few analyses first
        ingest_start = time.time()
        cli = subprocess.run(
            [sys.executable, "-m", "medrag", "--data-dir", str(settings.data_dir), "ingest", str(folder.parent)],
            cwd=REPO, env={**_env(), **store_env(settings.data_dir)}, capture_output=True, text=True, timeout=240,
        )
        ingest_end = time.time()
        probe.write_text(str(folder / "7.png"))
        _wait_for(Path(str(out) + ".probed"), app, 120, "run the probe analysis")
    finally:
        stop.write_text("stop")
        try:
            _, app_err = app.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            app.kill()
            _, app_err = app.communicate()
    return {
        "settings": settings, "cli": cli, "app_code": app.returncode, "app_err": app_err.decode(),
        "result": json.loads(out.read_text()), "start": ingest_start, "end": ingest_end,
        "probe_case": load_image(folder / "7.png").pixel_hash,
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_ingest_waits_while_app_process_keeps_serving(ingest_during_app: dict) -> None:  # type: ignore[type-arg]
    from medrag.workbench import Workbench

    run = ingest_during_app
    cli, result = run["cli"], run["result"]
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "Traceback" not in cli.stderr and "60 added" in cli.stdout, cli.stdout[-2000:]
    assert run["app_code"] == 0, run["app_err"][-3000:]
    during = [d for d in result["done"] if d[0] >= run["start"] and d[1] <= run["end"]]
    overlapping = [d for d in result["done"] if d[1] >= run["start"] and d[0] <= run["end"]]
    print(
        f"\ningest took {run['end'] - run['start']:.1f} s; app analyses: {len(result['done'])} in all, "
        f"{len(during)} entirely during the ingest, {len(overlapping)} overlapping it; "
        f"failures {len(result['failures'])}"
    )
    assert result["failures"] == [], result["failures"][:5]
    assert len(during) >= 1, "the app kept serving analyses while the CLI ingest ran"
    wb = Workbench(run["settings"])
    assert wb.store.count_cases() == 24 + 60
    assert wb.store.count_analyses() == len(result["done"]), "every analysis the app reported is stored"
    assert len(wb.ensure_index("image")) == 24 + 60


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_running_app_finds_cases_the_cli_imported(ingest_during_app: dict) -> None:  # type: ignore[type-arg]
    """After a CLI import, the running app's next analysis searches the new cases too (no restart)."""
    probe = ingest_during_app["result"]["probe"]
    assert probe and probe["neighbours"], "the probe analysis returned neighbours"
    case = ingest_during_app["probe_case"]
    assert probe["case_id"] == case and case not in probe["neighbours"]  # the running app knows the new case
    top_id, top_score = probe["search"][0]
    assert top_id == case and top_score > 0.99, (
        f"the app's index is stale: its best match for an imported image is {top_id[:12]} ({top_score:.3f})"
    )
