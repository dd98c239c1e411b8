"""Named model weights: which ones MedRAG knows, where each is looked for, whether it is here, how to get it.

- :mod:`~medrag.weights.catalog`: the named entries as data, their registry and lookups;
- :mod:`~medrag.weights.locate`: finding local copies in folders and caches (never the network);
- :mod:`~medrag.weights.files`: sizes and fingerprints of weight files;
- :mod:`~medrag.weights.hub`: switching huggingface_hub offline (loads) or online (pulls);
- :mod:`~medrag.weights.status`: ready or missing, for ``medrag models list``;
- :mod:`~medrag.weights.download`: ``medrag models pull``, the only code here that downloads;
- :mod:`~medrag.weights.install`: ``medrag models import``, copying validated local weights into place.
"""

from medrag.weights.catalog import (
    CATALOG,
    WEIGHTS,
    XRV_FILENAMES,
    WeightKind,
    WeightSpec,
    fix_command,
    get_weight_spec,
    source_for,
    weight_names,
)
from medrag.weights.download import pull_model
from medrag.weights.files import directory_size, file_fingerprint
from medrag.weights.hub import hub_offline, hub_online
from medrag.weights.install import import_model, validate_xrv_file
from medrag.weights.locate import (
    ResolvedKind,
    ResolvedWeights,
    adapter_base_ref,
    find_hf_snapshot,
    hf_cache_dir,
    hf_dir_kind,
    import_xrv,
    imported_dir,
    require_generation_model,
    resolve_hf,
    xrv_cache_dir,
    xrv_weights_filename,
    xrv_weights_path,
)
from medrag.weights.status import ModelStatus, list_models, model_status

__all__ = [
    "CATALOG",
    "WEIGHTS",
    "XRV_FILENAMES",
    "ModelStatus",
    "ResolvedKind",
    "ResolvedWeights",
    "WeightKind",
    "WeightSpec",
    "adapter_base_ref",
    "directory_size",
    "file_fingerprint",
    "find_hf_snapshot",
    "fix_command",
    "get_weight_spec",
    "hf_cache_dir",
    "hf_dir_kind",
    "hub_offline",
    "hub_online",
    "import_model",
    "import_xrv",
    "imported_dir",
    "list_models",
    "model_status",
    "pull_model",
    "require_generation_model",
    "resolve_hf",
    "source_for",
    "validate_xrv_file",
    "weight_names",
    "xrv_cache_dir",
    "xrv_weights_filename",
    "xrv_weights_path",
]
