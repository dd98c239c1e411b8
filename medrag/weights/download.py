"""``medrag models pull``: the only code in MedRAG's model handling that downloads, and only when asked."""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from medrag.errors import BackendUnavailableError, ConfigError
from medrag.weights.catalog import get_weight_spec, source_for
from medrag.weights.hub import hub_online
from medrag.weights.install import install_xrv_file
from medrag.weights.locate import (
    adapter_base_ref,
    hf_dir_kind,
    openclip_text_repos,
    resolve_base,
    xrv_url,
    xrv_weights_path,
)
from medrag.weights.status import ModelStatus, model_status

if TYPE_CHECKING:
    from medrag.config import Settings


def _snapshot(
    name: str, repo_id: str, cache_dir: Path, endpoint: str | None, allow_patterns: list[str] | None = None
) -> Path:
    from huggingface_hub import snapshot_download

    try:
        with hub_online():
            path = snapshot_download(
                repo_id, cache_dir=str(cache_dir), endpoint=endpoint, allow_patterns=allow_patterns
            )
    except Exception as exc:  # network, auth, gated repo, disk: all end the same way for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailableError(
            f"Could not download {repo_id} from the Hugging Face Hub ({type(exc).__name__}: {reason[:200]}). "
            "Check the network; for gated models (MedGemma) accept the licence on huggingface.co and run "
            "`hf auth login`; on an offline machine copy the model folder here and run "
            f"`medrag models import {name} PATH`."
        ) from exc
    return Path(path)


def _pull_xrv(weights: str, cache_dir: Path) -> None:
    target = xrv_weights_path(weights, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    url = xrv_url(weights)
    # Downloaded into a scratch folder beside the target, validated, then installed atomically.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        part = Path(tmp) / target.name
        try:
            with urllib.request.urlopen(url, timeout=30) as response, part.open("wb") as out:  # noqa: S310
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as exc:
            raise BackendUnavailableError(
                f"Could not download {url} ({exc}). Check the network, or download the file elsewhere and run "
                f"`medrag models import xrv-densenet121-all FILE.pt`."
            ) from exc
        install_xrv_file(part, target)


def pull_model(name: str, settings: Settings, *, endpoint: str | None = None) -> ModelStatus:
    """Download the weights called ``name`` (and an adapter's base, BiomedCLIP's tokenizer) into the caches.

    Run by ``medrag models pull NAME``, so it goes online even when ``HF_HUB_OFFLINE`` is set (the user asked
    for this download). ``endpoint`` overrides the hub URL (mirrors). Raises BackendUnavailableError with the
    reason when it fails.
    """
    spec = get_weight_spec(name)
    if spec.kind in ("wheel", "repo"):
        return model_status(name, settings)  # shipped with MedRAG: nothing to download
    if spec.kind == "xrv":
        _pull_xrv(spec.source, settings.xrv_cache_dir)
        return model_status(name, settings)
    ref = source_for(name, settings).removeprefix("hf-hub:")
    if Path(ref).expanduser().is_dir():
        raise ConfigError(
            f"{name} is set to the local folder {ref}; nothing to pull. Check it with `medrag models list`."
        )
    cache = settings.hf_cache_dir
    path = _snapshot(name, ref, cache, endpoint)
    kind = hf_dir_kind(path)
    if kind == "adapter" and resolve_base(path, settings) is None:
        _snapshot("medgemma-base", adapter_base_ref(path) or settings.hf_base_model, cache, endpoint)
    if kind == "openclip":
        for repo in openclip_text_repos(path):
            _snapshot(name, repo, cache, endpoint, allow_patterns=["*.json", "*.txt"])
    return model_status(name, settings)


__all__ = ["pull_model"]
