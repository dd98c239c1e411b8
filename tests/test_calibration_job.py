"""Fitting a library's calibration in the background (the Settings page's button): a real child process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medrag.config import Settings
from medrag.errors import ConfigError
from medrag.evaluation.calibration_job import JOB_FILE, FitJob, fit_job, start_fit
from medrag.reading.calibration import load_calibration
from pgsuite import suite_database_url

pytestmark = pytest.mark.slow


def _finished(data: Path, limit_s: float = 300.0) -> FitJob:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = fit_job(data)
        if job is not None and job.state != "running":
            return job
        time.sleep(0.5)
    raise AssertionError(f"the fit of {data} did not finish within {limit_s:.0f} s")


def test_a_background_fit_writes_the_calibration_and_a_second_start_waits_for_it(tmp_path: Path) -> None:
    from test_eval_reading import _labelled_library

    data = _labelled_library(tmp_path, films=16)
    settings = Settings(data_dir=data, web_provider="off", database_url=suite_database_url(data))
    assert fit_job(data) is None
    started = start_fit(settings)
    assert started.state == "running" and started.pid
    with pytest.raises(ConfigError, match="already running"):
        start_fit(settings)
    job = _finished(data)
    assert job.state == "done" and job.returncode == 0, job.log_tail
    assert any("Wrote" in line and "reading-calibration.json" in line for line in job.log_tail)
    calibration = load_calibration(data)
    assert calibration is not None and calibration.films == 16 and calibration.active
    assert job.seconds > 0


def test_a_fit_that_fails_or_dies_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    settings = Settings(data_dir=empty, web_provider="off", database_url=suite_database_url(empty))
    start_fit(settings)
    job = _finished(empty)
    assert job.state == "failed" and job.returncode == 2
    assert any("No cases to evaluate" in line for line in job.log_tail)
    assert load_calibration(empty) is None

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    record = json.loads((empty / JOB_FILE).read_text())
    (empty / JOB_FILE).write_text(json.dumps({"pid": int(gone.stdout), "started": record["started"]}))
    assert fit_job(empty).state == "stopped"  # type: ignore[union-attr]  # ended without reporting
    (empty / JOB_FILE).write_text("{broken")
    assert fit_job(empty) is None


def test_a_finished_fit_does_not_point_at_a_calibration_removed_since() -> None:
    from datetime import UTC, datetime, timedelta

    from medrag.evaluation.calibration_job import FitJob
    from medrag.ui.calibration_panel import _fit_line

    start = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    done = FitJob(None, start, start + timedelta(seconds=99), 0, ())
    assert _fit_line(done).endswith("finished in 99 s and wrote the calibration below.")
    assert _fit_line(done, fitted=False).endswith("wrote a calibration that has since been removed.")


_START_IN_CHILD = """
import sys
from medrag.config import Settings
from medrag.errors import ConfigError
from medrag.evaluation.calibration_job import start_fit
try:
    start_fit(Settings(data_dir=sys.argv[1], web_provider="off"))
    print("started")
except ConfigError as exc:
    print("refused:", exc)
"""


def test_a_start_waits_for_another_servers_start_and_then_sees_its_fit(tmp_path: Path) -> None:
    """Two app servers on one data folder: the check for a running fit and the record of a new one happen under
    one lock, so the second start sees the first's fit instead of starting its own."""
    import os
    from datetime import UTC, datetime

    from medrag.evaluation.calibration_job import _starting

    data = tmp_path / "shared"
    with _starting(data):  # another server is in the middle of starting a fit
        child = subprocess.Popen([sys.executable, "-c", _START_IN_CHILD, str(data)], stdout=subprocess.PIPE,
                                 text=True)
        time.sleep(1.5)
        assert child.poll() is None and not (data / JOB_FILE).exists()  # waiting, nothing written
        (data / JOB_FILE).write_text(json.dumps({"pid": os.getpid(), "started": datetime.now(UTC).isoformat()}))
    out, _ = child.communicate(timeout=60)
    assert out.startswith("refused:") and "already running" in out, out
