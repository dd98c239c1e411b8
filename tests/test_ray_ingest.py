"""Imports on Ray (issue #14 item 3): a local Ray cluster started inside the test gives the same cases,
vectors and index as a local import; a driver killed mid-import is resumed by running it again."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pgsuite import store_env

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -r requirements.txt)")

from medrag.config import Settings  # noqa: E402
from medrag.workbench import Workbench  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _folder(root: Path, n: int, size: int = 128) -> Path:
    """``n`` phantom films of four kinds with a labels CSV."""
    from medrag.phantoms import generate_phantom

    kinds = [frozenset(), frozenset({"effusion"}), frozenset({"cardiomegaly"}), frozenset({"pneumothorax"})]
    (root / "images").mkdir(parents=True)
    rows = ["image,label"]
    for i in range(n):
        findings = kinds[i % len(kinds)]
        pixels = generate_phantom(findings, seed=880_000 + i, size=size)
        buffer = io.BytesIO()
        Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
        (root / "images" / f"film_{i:04d}.png").write_bytes(buffer.getvalue())
        rows.append(f"images/film_{i:04d}.png,{'+'.join(sorted(findings)) or 'normal'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture()
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _library(data_dir: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(case id → label, case id → its 5 nearest case ids) of a data folder's library."""
    workbench = Workbench(Settings(data_dir=data_dir, web_provider="off"))
    frame = workbench.store.cases_frame()
    labels = dict(zip(frame["case_id"], frame["label"], strict=True))
    ids, vectors = workbench.store.load_embeddings(workbench.image_encoder.name, workbench.image_encoder.version)
    neighbours = {}
    for case_id, vector in zip(ids, vectors, strict=True):
        found = workbench.search_vector("image", vector, 5)
        neighbours[case_id] = [n.case_id for n in found]
    return labels, neighbours


def test_a_ray_import_equals_a_local_one(tmp_path: Path, local_ray: None) -> None:
    source = _folder(tmp_path / "films", 40)
    local = Workbench(Settings(data_dir=tmp_path / "local", web_provider="off"))
    local_report = local.ingest(source)
    on_ray = Workbench(Settings(data_dir=tmp_path / "ray", web_provider="off"))
    ray_report = on_ray.ingest(source, ray_address="local")  # the cluster this test started
    assert ray_report.added == local_report.added == 40 and not ray_report.errors
    local_labels, local_neighbours = _library(tmp_path / "local")
    ray_labels, ray_neighbours = _library(tmp_path / "ray")
    assert ray_labels == local_labels  # the same cases (keyed by their pixels) with the same labels
    assert ray_neighbours == local_neighbours  # the same vectors and index: every search answers the same
    assert len(list((tmp_path / "ray" / "thumbs").rglob("*.jpg"))) == 40


def test_a_killed_ray_import_resumes_without_losing_or_doubling(tmp_path: Path) -> None:
    source = _folder(tmp_path / "films", 400, size=256)
    env = {**os.environ, "MEDRAG_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "MEDRAG_WEB": "off",
           **store_env(tmp_path / "data")}
    command = [sys.executable, "-m", "medrag", "ingest", str(source), "--ray"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stderr is not None
    progressed = ""
    deadline = time.monotonic() + 240
    os.set_blocking(proc.stderr.fileno(), False)
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            progressed += os.read(proc.stderr.fileno(), 65536).decode("utf-8", "replace")
        except BlockingIOError:
            pass
        done = [int(m) for m in re.findall(r"\|\s*(\d+)/400", progressed)]
        if done and 0 < max(done) < 400:
            break  # at least one batch is in the store, and the import is not over
        time.sleep(0.05)
    assert proc.poll() is None, f"the import ended before it could be killed:\n{progressed[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    proc.wait(timeout=30)

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = re.search(r"(\d+) seen, (\d+) added, \d+ duplicate pixels, (\d+) unchanged", resumed.stdout)
    assert summary is not None, resumed.stdout
    seen, added, unchanged = (int(g) for g in summary.groups())
    assert seen == 400 and unchanged > 0 and added + unchanged == 400  # finished batches skipped, not redone
    workbench = Workbench(Settings(data_dir=tmp_path / "data", web_provider="off"))
    assert workbench.store.count_cases() == 400  # nothing lost, nothing twice
    ids, _ = workbench.store.load_embeddings(workbench.image_encoder.name, workbench.image_encoder.version)
    assert len(ids) == len(set(ids)) == 400


def test_the_worker_plan_follows_the_cluster_cpus_and_gpus() -> None:
    from medrag.errors import BackendUnavailableError
    from medrag.ingest_ray import worker_plan

    assert worker_plan({"CPU": 8.0}, 0.0) == (8, {})
    assert worker_plan({"CPU": 16.0, "GPU": 2.0}, 0.25) == (8, {"num_gpus": 0.25})
    assert worker_plan({"CPU": 4.0, "GPU": 2.0}, 0.25) == (4, {"num_gpus": 0.25})  # never more than the CPUs
    with pytest.raises(BackendUnavailableError, match="has 0 GPUs.*ray start --num-gpus"):
        worker_plan({"CPU": 8.0}, 0.5)


def test_gpu_workers_are_placed_by_ray_and_import_the_same(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cluster that declares one GPU (Ray schedules on the resource; torch here finds no CUDA device and runs
    on the CPU): two workers with half a GPU each import exactly what a local import does."""
    import logging

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        source = _folder(tmp_path / "films", 16)
        Workbench(Settings(data_dir=tmp_path / "local", web_provider="off")).ingest(source)
        on_gpus = Workbench(Settings(data_dir=tmp_path / "gpus", web_provider="off", ray_gpus=0.5))
        with caplog.at_level(logging.INFO, logger="medrag"):
            report = on_gpus.ingest(source, ray_address="local")
        assert report.added == 16 and not report.errors
        assert "16 items on 2 workers (0.5 GPU each)" in caplog.text
        assert _library(tmp_path / "gpus") == _library(tmp_path / "local")
    finally:
        ray.shutdown()
