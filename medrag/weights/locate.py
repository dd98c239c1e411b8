"""Finding weights on this machine: the HF cache, local folders, the imported-models folder, the xrv cache.

Nothing here touches the network. A Hugging Face style reference is looked for, in order, in

1. a local directory named by the settings (e.g. ``hf_reasoner_model=/models/my-medgemma``),
2. the Hugging Face hub cache (``settings.hf_cache_dir``: ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
   ``~/.cache/huggingface/hub``),
3. the imported-models folder ``settings.models_dir / "hf" / NAME`` (see :func:`medrag.weights.import_model`);

torchxrayvision weights live in ``settings.xrv_cache_dir`` (``$MEDRAG_XRV_CACHE`` or
``~/.torchxrayvision/models_data``). Callers without Settings get the environment's folders from
:mod:`medrag.config`, the only reader of the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medrag.config import default_hf_cache_dir, default_xrv_cache_dir
from medrag.errors import BackendUnavailableError, ConfigError, InputError
from medrag.weights.catalog import XRV_FILENAMES, fix_command

if TYPE_CHECKING:
    from medrag.config import Settings

ResolvedKind = Literal["model", "adapter", "openclip", "xrv", "wheel"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
DEFAULT_XRV_WEIGHTS = "densenet121-res224-all"


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights found on this machine."""

    path: Path
    kind: ResolvedKind
    #: "directory", "hf-cache", "imported", "xrv-cache" or "wheel".
    where: str
    #: For an adapter: the base model's directory.
    base_path: Path | None = None


# ---------------------------------------------------------------------------------------------- folders


def hf_cache_dir(settings: Settings | None = None) -> Path:
    """The Hugging Face hub cache these settings use (the environment's when no settings are given)."""
    return settings.hf_cache_dir if settings is not None else default_hf_cache_dir()


def xrv_cache_dir(settings: Settings | None = None) -> Path:
    """torchxrayvision's weights folder for these settings (the environment's when no settings are given)."""
    return settings.xrv_cache_dir if settings is not None else default_xrv_cache_dir()


def imported_dir(name: str, settings: Settings) -> Path:
    """Where :func:`medrag.weights.import_model` puts a Hugging Face / open_clip folder for ``name``."""
    return settings.models_dir / "hf" / name


# ---------------------------------------------------------------------------------------------- HF folders


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in a model folder's config file, or InputError saying to re-copy the folder."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); re-copy the model folder.") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object; re-copy the model folder.")
    return data


def find_hf_snapshot(repo_id: str, cache_dir: Path | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` (revision main) in ``cache_dir``, or None. Never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    repo_id = repo_id.removeprefix("hf-hub:")
    if repo_id.count("/") != 1:
        return None
    cache = cache_dir if cache_dir is not None else default_hf_cache_dir()
    try:
        path = snapshot_download(repo_id, cache_dir=str(cache), local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None
    return Path(path)


def _has_weights(path: Path, stem: str = "") -> bool:
    return any(
        f.is_file() and f.suffix in _WEIGHT_SUFFIXES and f.name.startswith(stem) for f in path.iterdir()
    )


def hf_dir_kind(path: Path) -> Literal["model", "adapter", "openclip"] | None:
    """What a folder holds: a transformers model, a PEFT adapter, an open_clip model, or None."""
    if not path.is_dir():
        return None
    if (path / "adapter_config.json").is_file() and _has_weights(path, "adapter_model"):
        return "adapter"
    if (path / "open_clip_config.json").is_file() and _has_weights(path):
        return "openclip"
    if (path / "config.json").is_file() and _has_weights(path):
        return "model"
    return None


def adapter_base_ref(adapter_dir: Path) -> str:
    """The base model an adapter names in adapter_config.json ("" if none)."""
    return str(read_json_object(adapter_dir / "adapter_config.json").get("base_model_name_or_path") or "")


def openclip_text_repos(model_dir: Path) -> list[str]:
    """HF repos an open_clip config needs for its text tower (config + tokenizer)."""
    text_cfg = read_json_object(model_dir / "open_clip_config.json").get("model_cfg", {}).get("text_cfg", {})
    return list(dict.fromkeys(r for r in (text_cfg.get("hf_model_name"), text_cfg.get("hf_tokenizer_name")) if r))


def _candidate_dirs(ref: str, name: str | None, settings: Settings) -> Iterator[tuple[Path, str]]:
    ref = ref.removeprefix("local-dir:")
    local = Path(ref).expanduser()
    if local.is_dir():
        yield local.resolve(), "directory"
        return
    snapshot = find_hf_snapshot(ref, settings.hf_cache_dir)
    if snapshot is not None:
        yield snapshot, "hf-cache"
    if name is not None:
        yield imported_dir(name, settings), "imported"


def resolve_hf(
    ref: str, name: str | None, settings: Settings, *, with_base: bool = True
) -> ResolvedWeights | None:
    """Find a transformers model, PEFT adapter or open_clip folder for ``ref`` locally, or None.

    ``ref`` is a repo id (optionally ``hf-hub:``), a directory (optionally ``local-dir:``); ``name`` is the
    catalogue name whose imported folder is the last place looked. An adapter's ``base_path`` is resolved
    from its adapter_config.json, then ``settings.hf_base_model``; it stays None when neither is here.
    """
    for path, where in _candidate_dirs(ref, name, settings):
        kind = hf_dir_kind(path)
        if kind is None:
            continue
        if kind != "adapter":
            return ResolvedWeights(path, kind, where)
        base = resolve_base(path, settings) if with_base else None
        return ResolvedWeights(path, "adapter", where, base_path=base)
    return None


def resolve_base(adapter_dir: Path, settings: Settings) -> Path | None:
    """The local folder of the base model an adapter needs (its own reference first, then the settings')."""
    refs = [adapter_base_ref(adapter_dir), settings.hf_base_model]
    for ref in dict.fromkeys(r for r in refs if r):
        found = resolve_hf(ref, "medgemma-base", settings, with_base=False)
        if found is not None and found.kind == "model":
            return found.path
    return None


def require_generation_model(ref: str, name: str, settings: Settings) -> ResolvedWeights:
    """Resolve a transformers model or adapter (with its base), or raise a one-line BackendUnavailableError."""
    found = resolve_hf(ref, name, settings)
    if found is None or found.kind == "openclip":
        raise BackendUnavailableError(f"Model {ref} ({name}) is not on this machine; {fix_command(name)}.")
    if found.kind == "adapter" and found.base_path is None:
        base = adapter_base_ref(found.path) or settings.hf_base_model
        raise BackendUnavailableError(
            f"{name} is a LoRA adapter for {base}, which is not on this machine; {fix_command('medgemma-base')}."
        )
    return found


# ---------------------------------------------------------------------------------------------- torchxrayvision


def import_xrv() -> Any:
    """Import torchxrayvision without letting it switch off every warning in the process (it does on import)."""
    import warnings

    with warnings.catch_warnings():
        import torchxrayvision

    return torchxrayvision


def xrv_url(weights: str) -> str:
    """torchxrayvision's release URL for ``weights`` (imports torchxrayvision)."""
    xrv = import_xrv()
    try:
        return str(xrv.models.model_urls[weights]["weights_url"])
    except KeyError:
        raise ConfigError(f"torchxrayvision has no weights called {weights!r}.") from None


def xrv_weights_filename(weights: str = DEFAULT_XRV_WEIGHTS) -> str:
    """File name torchxrayvision stores ``weights`` under (the basename of its release URL)."""
    if weights in XRV_FILENAMES:
        return XRV_FILENAMES[weights]
    return os.path.basename(xrv_url(weights))


def xrv_weights_path(weights: str = DEFAULT_XRV_WEIGHTS, cache_dir: Path | None = None) -> Path:
    """Where the torchxrayvision weights file is (or would be) in ``cache_dir`` (default: the environment's)."""
    cache = cache_dir if cache_dir is not None else default_xrv_cache_dir()
    return cache / xrv_weights_filename(weights)


__all__ = [
    "DEFAULT_XRV_WEIGHTS",
    "ResolvedKind",
    "ResolvedWeights",
    "adapter_base_ref",
    "find_hf_snapshot",
    "hf_cache_dir",
    "hf_dir_kind",
    "import_xrv",
    "imported_dir",
    "openclip_text_repos",
    "read_json_object",
    "require_generation_model",
    "resolve_base",
    "resolve_hf",
    "xrv_cache_dir",
    "xrv_url",
    "xrv_weights_filename",
    "xrv_weights_path",
]
