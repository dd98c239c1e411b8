"""Fitting a library's calibration in the background, so the Settings page can start it and show how it goes.

``medrag eval reading --write-calibration`` reads every labelled film (minutes on a large library), far too long
for one run of a page script. :func:`start_fit` starts it as its own process; the process keeps
``<data>/eval/calibration-fit.json`` (pid, start, end, exit status) and writes its output to
``calibration-fit.log`` beside it, so any session, and a restarted server, can tell how the fit went. The
fit measures before it writes (cross-fitted by patient), exactly as from the command line, and a running app
reads with the new calibration from its next analysis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from medrag.config import Settings
from medrag.errors import ConfigError
from medrag.fsutil import atomic_write_text

JOB_FILE = Path("eval") / "calibration-fit.json"
LOG_FILE = Path("eval") / "calibration-fit.log"
LOCK_FILE = Path("eval") / "calibration-fit.lock"
#: A fit whose process has not reported its pid this long after the start has failed to start.
START_GRACE_SECONDS = 60.0
#: The command the process runs (after ``--data-dir``).
FIT_ARGS: tuple[str, ...] = ("eval", "reading", "--write-calibration")

JobState = Literal["running", "done", "failed", "stopped"]
_CHILDREN: list[subprocess.Popen[bytes]] = []  # reaped on each look, so a finished fit leaves no zombie


def _now() -> datetime:
    return datetime.now(UTC)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class FitJob:
    """The last background fit of a data folder."""

    pid: int | None
    started: datetime
    finished: datetime | None
    returncode: int | None
    #: the last lines of its output
    log_tail: tuple[str, ...]

    @property
    def state(self) -> JobState:
        """running; done (calibration written); failed (its output says why); stopped (ended without finishing)."""
        if self.finished is not None:
            return "done" if self.returncode == 0 else "failed"
        if self.pid is None:
            waited = (_now() - self.started).total_seconds()
            return "running" if waited < START_GRACE_SECONDS else "stopped"
        return "running" if _alive(self.pid) else "stopped"

    @property
    def seconds(self) -> float:
        """How long it ran (so far)."""
        return ((self.finished or _now()) - self.started).total_seconds()


def _write(data_dir: Path, record: dict[str, Any]) -> None:
    path = data_dir / JOB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record) + "\n")


def _tail(path: Path, lines: int) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    return tuple(line for line in text.splitlines() if line.strip())[-lines:]


def fit_job(data_dir: Path, tail: int = 6) -> FitJob | None:
    """The data folder's last background fit (None when none was started or its record is unreadable)."""
    for child in list(_CHILDREN):
        if child.poll() is not None:
            _CHILDREN.remove(child)
    try:
        record = json.loads((Path(data_dir) / JOB_FILE).read_text(encoding="utf-8"))
        started = datetime.fromisoformat(str(record["started"]))
        finished = datetime.fromisoformat(str(record["finished"])) if record.get("finished") else None
        pid = int(record["pid"]) if record.get("pid") is not None else None
        code = int(record["returncode"]) if record.get("returncode") is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return FitJob(pid, started, finished, code, _tail(Path(data_dir) / LOG_FILE, tail))


@contextmanager
def _starting(data_dir: Path) -> Iterator[None]:
    """Held while a start checks for a running fit and records its own: two app servers on one data folder
    pressing the button at once start one fit, not two (an advisory lock on ``calibration-fit.lock``)."""
    import fcntl

    path = data_dir / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def start_fit(settings: Settings) -> FitJob:
    """Start fitting the library's calibration in its own process; a ConfigError while one is still running."""
    data_dir = Path(settings.data_dir)
    with _starting(data_dir):
        current = fit_job(data_dir)
        if current is not None and current.state == "running":
            raise ConfigError(f"a calibration fit of this library is already running (started "
                              f"{current.started:%H:%M:%S} UTC); wait for it to finish")
        started = _now()
        _write(data_dir, {"pid": None, "started": started.isoformat()})
    env = {**os.environ, "MEDRAG_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if settings.database_url:  # in the environment, never on a command line others can list
        env["MEDRAG_DATABASE_URL"] = settings.database_url
    log = (data_dir / LOG_FILE).open("wb")
    try:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", __name__, str(data_dir), started.isoformat()], stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError as exc:
        _write(data_dir, {"pid": None, "started": started.isoformat(), "finished": _now().isoformat(),
                          "returncode": 1})
        raise ConfigError(f"cannot start the calibration fit ({exc}); run `medrag eval reading "
                          "--write-calibration` instead") from exc
    finally:
        log.close()
    _CHILDREN.append(child)
    return FitJob(child.pid, started, None, None, ())


def run_fit(data_dir: Path, started: str) -> int:
    """The fit process: record its pid, run the command, record how it ended."""
    from medrag.cli import main

    _write(data_dir, {"pid": os.getpid(), "started": started})
    code = 1
    try:
        code = main(["--data-dir", str(data_dir), *FIT_ARGS])
    finally:
        _write(data_dir, {"pid": os.getpid(), "started": started, "finished": _now().isoformat(),
                          "returncode": code})
    return code


__all__ = ["FIT_ARGS", "JOB_FILE", "LOG_FILE", "FitJob", "fit_job", "run_fit", "start_fit"]


if __name__ == "__main__":
    sys.exit(run_fit(Path(sys.argv[1]), sys.argv[2]))
