"""Shared helpers for the benchmark scripts: thread limits, timing statistics, machine info, tables.

Import this module *before* numpy/faiss/torch in a benchmark script: it pins the BLAS/OpenMP thread
count from ``MEDRAG_BENCH_THREADS`` (default 2) so every library uses the same few threads.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

THREADS = int(os.environ.get("MEDRAG_BENCH_THREADS", "2"))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402  (after the thread variables on purpose)

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "cxr-real"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def set_faiss_threads(n: int = THREADS) -> None:
    """Pin FAISS's OpenMP pool to ``n`` threads (no-op when faiss is absent)."""
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(n)


def stats(samples: Iterable[float]) -> dict[str, float]:
    """Median (p50), p95, mean, min and count of a list of durations or values."""
    arr = np.asarray(list(samples), dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "min": float("nan")}
    return {
        "n": int(arr.size),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "mean": float(arr.mean()),
        "min": float(arr.min()),
    }


def time_each(fn: Callable[[Any], Any], items: Sequence[Any], warmup: int = 5) -> np.ndarray:
    """Seconds taken by ``fn(item)`` for each item (after ``warmup`` untimed calls)."""
    for item in items[: min(warmup, len(items))]:
        fn(item)
    out = np.empty(len(items), dtype=np.float64)
    for i, item in enumerate(items):
        start = time.perf_counter()
        fn(item)
        out[i] = time.perf_counter() - start
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        return _proc_status_kb("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux VmHWM)."""
    kb = _proc_status_kb("VmHWM")
    if kb:
        return kb * 1024
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _proc_status_kb(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ≥ 4.0, writes 5 to clear_refs); True when it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gib() -> float:
    """Total RAM in GiB (from /proc/meminfo)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def machine_info() -> dict[str, Any]:
    """Date, CPU, cores, memory and library versions for a results header."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "mem_gib": round(mem_total_gib(), 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": THREADS,
    }
    for name in ("faiss", "hnswlib", "usearch", "duckdb", "torch"):
        if name in sys.modules:
            info[name] = _version(name)
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def _version(name: str) -> str:
    module = sys.modules.get(name)
    found = getattr(module, "__version__", None)
    if found:
        return str(found)
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # not installed as a distribution of that name
        return "?"


def command_line() -> str:
    """The command that is running, as one could paste it (relative to the repo root)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_text = str(script)
    return " ".join(["python", shlex.quote(script_text), *map(shlex.quote, sys.argv[1:])])


def header() -> str:
    """Markdown lines naming the command, date and machine."""
    info = machine_info()
    libraries = ("numpy", "faiss", "hnswlib", "usearch", "duckdb", "torch")
    versions = ", ".join(f"{k} {info[k]}" for k in libraries if k in info)
    return (
        f"Command: `{command_line()}`  \n"
        f"Date: {info['date']}  \n"
        f"Machine: {info['nproc']} cores ({info['cpu']}), {info['mem_gib']} GiB RAM, "
        f"{info['threads']} threads; Python {info['python']}, {versions}; "
        f"load average (1 min) at the end: {info.get('loadavg_1m', '?')}"
    )


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` significant digits, others as str."""
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if value == 0:
            return "0"
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A markdown table of ``rows`` (dicts), in ``columns`` order (default: first row's keys)."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` plus the machine info to ``path`` (no-op for None)."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"command": command_line(), "machine": machine_info(), **payload}
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


def parse_ints(text: str) -> list[int]:
    """``"10000,100k,1M"`` → ``[10000, 100000, 1000000]``."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1
        if part.endswith("k"):
            mult, part = 1000, part[:-1]
        elif part.endswith("m"):
            mult, part = 1_000_000, part[:-1]
        out.append(int(float(part) * mult))
    return out


def mib(n_bytes: float) -> float:
    """Bytes → MiB."""
    return n_bytes / 2**20
