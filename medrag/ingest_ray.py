"""Large imports on a Ray cluster: the per-image work (decode, thumbnail, features) on the cluster's workers.

``medrag ingest PATH --ray`` starts a local Ray instance on this machine's cores; ``--ray ADDRESS`` joins a
running cluster (``ray start --head`` on one machine, ``ray start --address=…`` on the others). The workers
run the same :func:`medrag.ingest_worker.prepare` as local worker processes, through Ray's drop-in
``multiprocessing.Pool``, and send each prepared image back in order; this process writes the batches to the
store exactly as a local import does. So an import that stops (a worker or this driver killed) is resumed by
running the same command again: batches are all-or-nothing, finished files are known by their fingerprints
and skipped, and a case is keyed by its pixels, so nothing is lost and nothing is stored twice.

With ``settings.ray_gpus`` (``--ray-gpus``, a share of a GPU) each worker asks Ray for that much GPU, so the
workers, and the torch encoders and readers they load (``MEDRAG_DEVICE=auto``), run on the GPU machines.

On a cluster the workers must see the source files and the data folder (thumbnails, the fitted encoder) at
the same paths: a shared filesystem, as for app replicas (docs/DEPLOY.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from medrag.errors import BackendUnavailableError
from medrag.ingest_worker import IngestItem, PreparedImage, init_worker, prepare

if TYPE_CHECKING:
    from medrag.config import Settings

#: ``--ray`` without an address: a Ray instance started here, on this machine's cores.
LOCAL = "local"
#: Items sent to a Ray worker at a time (a task per chunk: Ray's per-task overhead is a few milliseconds).
CHUNK = 32

log = logging.getLogger("medrag")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError(
            "--ray needs the ray package: pip install -r requirements.txt (or import without --ray)."
        ) from None
    return ray


def _connect(ray: Any, address: str) -> bool:
    """Join (or start) the cluster unless this process already did; whether this call started it."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    try:
        if address == LOCAL:
            ray.init(num_cpus=os.cpu_count() or 1, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackendUnavailableError(
            f"No Ray cluster could be joined at {address!r} ({exc}); start one with `ray start --head` and pass "
            "its address, use `--ray` alone for this machine, or import without --ray."
        ) from None
    return True


def worker_plan(resources: dict[str, float], gpus_per_worker: float) -> tuple[int, dict[str, Any]]:
    """How many workers, and the Ray resources each asks for: one per CPU, or with a GPU share as many as the
    cluster's GPUs hold (never more than its CPUs); a BackendUnavailableError when it has no GPU to share."""
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus_per_worker <= 0:
        return cpus, {}
    gpus = float(resources.get("GPU", 0.0))
    if gpus < gpus_per_worker:
        raise BackendUnavailableError(
            f"--ray-gpus {gpus_per_worker:g} asks each worker for that share of a GPU, but the Ray cluster has "
            f"{gpus:g} GPUs; start its workers on GPU machines (`ray start --num-gpus=N`) or import without --ray-gpus."
        )
    return max(1, min(cpus, int(gpus / gpus_per_worker + 1e-9))), {"num_gpus": gpus_per_worker}


def ray_prepared_stream(
    todo: list[IngestItem], settings: Settings, embed: bool, address: str
) -> Iterator[PreparedImage]:
    """Every item prepared by the cluster's workers, in order (a failed task becomes that item's error)."""
    ray = _ray()
    started = _connect(ray, address)
    try:
        from ray.util.multiprocessing import Pool

        workers, remote = worker_plan(ray.cluster_resources(), float(settings.ray_gpus))
        log.info("ray import: %d items on %d workers%s", len(todo), workers,
                 f" ({settings.ray_gpus:g} GPU each)" if remote else "")
        with Pool(processes=workers, initializer=init_worker, initargs=(settings, embed),
                  ray_remote_args=remote) as pool:
            for item, result in zip(todo, pool.imap(prepare, todo, chunksize=CHUNK), strict=True):
                if isinstance(result, PreparedImage):
                    yield result
                else:  # Ray hands back a task's exception as the result (PoolTaskError)
                    yield PreparedImage(item, error=f"a Ray worker failed on it: {result}")
    finally:
        if started:
            ray.shutdown()


__all__ = ["CHUNK", "LOCAL", "ray_prepared_stream", "worker_plan"]
