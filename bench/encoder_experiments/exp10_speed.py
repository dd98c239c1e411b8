"""Experiment 10: classic encoder cost on one core — wall time and CPU time (process_time).

The dev machine is shared (load average often 5-8 on 2 cores), so wall time overstates cost;
CPU time of a single-threaded process is the better estimate of one core's throughput.
Reports the best of 5 passes over 200 nih images (512 px) and 200 kermany images (224 px), and
PNG decode (medrag.imaging.load_image) + embed from files.
Run: OMP_NUM_THREADS=1 .venv/bin/python bench/encoder_experiments/exp10_speed.py
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL, load_all  # noqa: E402
from medrag.encoders.classic import ClassicEncoder  # noqa: E402
from medrag.imaging import load_image  # noqa: E402


def best(fn: Callable[[], None], n: int, passes: int = 5) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(passes):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - w) * 1000 / n)
        cpus.append((time.process_time() - c) * 1000 / n)
    return min(walls), min(cpus)


def main() -> None:
    images, rows = load_all()
    nih = [i for i, r in enumerate(rows) if r["dataset"] == "nih"][:200]
    ker = [i for i, r in enumerate(rows) if r["dataset"] == "kermany"][:200]
    enc = ClassicEncoder()
    enc.fit([images[i] for i in nih])
    print(f"load average {os.getloadavg()[0]:.1f}")
    for name, idx in (("embed 512-px nih", nih), ("embed 224-px kermany", ker)):
        batch = [images[i] for i in idx]
        wall, cpu = best(lambda b=batch: enc.embed(b), len(batch))
        print(f"{name:<34} wall {wall:5.2f} ms  cpu {cpu:5.2f} ms  -> {1000 / cpu:4.0f} img/s/core (cpu)")
    paths = [REAL / rows[i]["image"] for i in nih]
    wall, cpu = best(lambda: [load_image(p) for p in paths], len(paths))
    print(f"{'decode only (load_image), 512-px':<34} wall {wall:5.2f} ms  cpu {cpu:5.2f} ms")
    wall, cpu = best(lambda: [enc.embed([load_image(p).pixels]) for p in paths], len(paths))
    print(f"{'decode + embed, 512-px':<34} wall {wall:5.2f} ms  cpu {cpu:5.2f} ms  -> {1000 / cpu:4.0f} img/s/core (cpu)")


if __name__ == "__main__":
    main()
