"""medrag.weights: the named-weights registry, status, import and pull (never reaching the network)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from medrag import weights as W
from medrag.config import Settings
from medrag.errors import BackendUnavailableError, ConfigError, InputError
from tiny_models import build_tiny_gemma3, build_tiny_lora_adapter, build_tiny_xrv, make_hf_cache_entry

BASE_REPO = "google/medgemma-4b-it"
REASONER_REPO = "Manusinhh/medgemma-finetuned-cxr-reasoning"


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny") / "gemma")


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_gemma: Path) -> Path:
    """An adapter that names the real base repo id, as the published MedGemma adapters do."""
    return build_tiny_lora_adapter(tiny_gemma, tmp_path_factory.mktemp("tiny") / "lora", base_ref=BASE_REPO)


@pytest.fixture(autouse=True)
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fresh, empty HF and xrv caches so a developer's real caches cannot change the results."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("MEDRAG_XRV_CACHE", str(tmp_path / "xrv-cache"))
    return cache


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _status(settings: Settings) -> dict[str, W.ModelStatus]:
    return {s.name: s for s in W.list_models(settings)}


def test_registry_names_and_unknown_name() -> None:
    assert W.weight_names() == sorted(
        ["medgemma-reasoner", "medgemma-summariser", "medgemma-base", "biomedclip", "xrv-densenet121-all", "minilm",
         "medrag-segmenter", "medrag-cnn"]
    )
    with pytest.raises(ConfigError, match="biomedclip"):
        W.get_weight_spec("gpt-5")


def test_xrv_filename_matches_torchxrayvision() -> None:
    xrv = W.import_xrv()
    url = xrv.models.model_urls["densenet121-res224-all"]["weights_url"]
    assert W.xrv_weights_filename() == os.path.basename(url)


def test_fresh_machine_everything_missing_but_minilm(settings: Settings) -> None:
    status = _status(settings)
    assert list(status) == list(W.WEIGHTS)
    assert status["minilm"].ready and status["minilm"].size_bytes > 1_000_000 and status["minilm"].fix == ""
    for name in ("medgemma-reasoner", "medgemma-summariser", "medgemma-base", "biomedclip", "xrv-densenet121-all"):
        row = status[name]
        assert row.status == "missing" and row.path is None and row.size_bytes == 0
        assert f"medrag models pull {name}" in row.fix and f"medrag models import {name} PATH" in row.fix


def test_fix_script_lists_each_command_once_as_a_line_to_copy() -> None:
    from medrag.weights.catalog import fix_command, fix_script

    assert fix_script("biomedclip", fix_command("biomedclip")).splitlines() == [
        "# biomedclip",
        "medrag models pull biomedclip  # online",
        "medrag models import biomedclip PATH  # offline copy",
    ]
    repo = fix_script("medrag-cnn", fix_command("medrag-cnn")).splitlines()
    assert repo[:2] == ["# medrag-cnn", "git checkout -- medrag/reading/weights"]
    assert len(repo) == 3 and repo[2].startswith("python -m medrag.training.cnn_train")
    assert fix_script("x", "see the README") == "# x: see the README"  # no command: the text as a comment


def test_settings_override_source(settings: Settings, tiny_gemma: Path) -> None:
    custom = settings.with_overrides(hf_reasoner_model=str(tiny_gemma))
    row = W.model_status("medgemma-reasoner", custom)
    assert row.source == str(tiny_gemma) and row.ready and row.detail == "directory"
    assert W.source_for("medgemma-reasoner", settings) == REASONER_REPO


def test_hf_cache_snapshot_is_found(settings: Settings, empty_caches: Path, tiny_gemma: Path) -> None:
    snapshot = make_hf_cache_entry(empty_caches, BASE_REPO, tiny_gemma)
    row = W.model_status("medgemma-base", settings)
    assert row.ready and row.path == snapshot and row.detail == "hf-cache"
    assert row.__dict__["status"] == "ready" and "medgemma-base" in str(row) and "MB" in str(row)
    assert row.size_bytes == W.directory_size(tiny_gemma) > 0
    assert W.find_hf_snapshot(BASE_REPO) == snapshot
    assert W.find_hf_snapshot("not-a-repo-id") is None


def test_adapter_needs_its_base(settings: Settings, empty_caches: Path, tiny_gemma: Path, tiny_adapter: Path) -> None:
    make_hf_cache_entry(empty_caches, REASONER_REPO, tiny_adapter)
    row = W.model_status("medgemma-reasoner", settings)
    assert not row.ready and row.path is not None
    assert BASE_REPO in row.detail and "medrag models pull medgemma-base" in row.fix
    with pytest.raises(BackendUnavailableError, match="medgemma-base") as info:
        W.require_generation_model(REASONER_REPO, "medgemma-reasoner", settings)
    assert "\n" not in str(info.value)

    make_hf_cache_entry(empty_caches, BASE_REPO, tiny_gemma)
    resolved = W.require_generation_model(REASONER_REPO, "medgemma-reasoner", settings)
    assert resolved.kind == "adapter" and resolved.where == "hf-cache"
    assert resolved.base_path == W.find_hf_snapshot(BASE_REPO)
    assert W.model_status("medgemma-reasoner", settings).ready


def test_adapter_base_falls_back_to_settings(settings: Settings, tiny_gemma: Path, tiny_adapter: Path) -> None:
    custom = settings.with_overrides(hf_reasoner_model=str(tiny_adapter), hf_base_model=str(tiny_gemma))
    resolved = W.require_generation_model(str(tiny_adapter), "medgemma-reasoner", custom)
    assert resolved.base_path == tiny_gemma.resolve()


def test_import_hf_folder(settings: Settings, tiny_gemma: Path, empty_caches: Path) -> None:
    # Import from an HF snapshot: its files may be symlinks; the import holds real copies.
    snapshot = make_hf_cache_entry(empty_caches, "someone/copy", tiny_gemma)
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.safetensors").symlink_to(tiny_gemma / "model.safetensors")
    row = W.import_model("medgemma-summariser", snapshot, settings)
    target = W.imported_dir("medgemma-summariser", settings)
    assert row.ready and row.path == target and row.detail == "imported"
    assert not (target / "model.safetensors").is_symlink()
    assert (target / "model.safetensors").read_bytes() == (tiny_gemma / "model.safetensors").read_bytes()
    # Importing again replaces the folder (no stale files kept).
    (target / "stale.txt").write_text("old")
    W.import_model("medgemma-summariser", tiny_gemma, settings)
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["medgemma-summariser"]


def test_import_adapter_folder(settings: Settings, tiny_adapter: Path) -> None:
    row = W.import_model("medgemma-reasoner", tiny_adapter, settings)
    assert row.path == W.imported_dir("medgemma-reasoner", settings)
    assert not row.ready and "medgemma-base" in row.fix  # adapter imported; base still missing


@pytest.mark.parametrize(
    ("name", "files", "message"),
    [
        ("medgemma-base", {}, "neither a transformers model"),
        ("medgemma-base", {"config.json": "{}"}, "neither a transformers model"),
        ("medgemma-base", {"config.json": "{}", "model.safetensors": "x"}, "no tokenizer"),
        (
            "medgemma-base",
            {"config.json": "{not json", "model.safetensors": "x", "tokenizer.json": "{}"},
            "not valid JSON",
        ),
        ("biomedclip", {"config.json": "{}", "model.safetensors": "x"}, "not an open_clip model folder"),
        ("biomedclip", {"open_clip_config.json": "{}", "open_clip_model.safetensors": "x"}, "no model_cfg"),
    ],
)
def test_import_rejects_incomplete_folders(
    settings: Settings, tmp_path: Path, name: str, files: dict[str, str], message: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for fname, text in files.items():
        (src / fname).write_text(text)
    with pytest.raises(InputError, match=message):
        W.import_model(name, src, settings)
    assert not W.imported_dir(name, settings).exists()


def test_import_rejects_bad_paths(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        W.import_model("medgemma-base", tmp_path / "nope", settings)
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="is a file"):
        W.import_model("medgemma-base", tmp_path / "file.bin", settings)
    with pytest.raises(ConfigError, match="nothing to import"):
        W.import_model("minilm", tmp_path, settings)
    with pytest.raises(ConfigError, match="Unknown model"):
        W.import_model("nope", tmp_path, settings)


def test_import_xrv_file(settings: Settings, tmp_path: Path) -> None:
    import torch

    state_dict_file = tmp_path / "state.pt"
    torch.save({"classifier.weight": torch.zeros(2, 2)}, state_dict_file)
    with pytest.raises(InputError, match="not a pickled model"):
        W.import_model("xrv-densenet121-all", state_dict_file, settings)
    other_module = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(2, 2), other_module)
    with pytest.raises(InputError, match="not a torchxrayvision DenseNet"):
        W.import_model("xrv-densenet121-all", other_module, settings)
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="does not load"):
        W.import_model("xrv-densenet121-all", tmp_path / "junk.pt", settings)
    with pytest.raises(InputError, match="give the torchxrayvision .pt file"):
        W.import_model("xrv-densenet121-all", tmp_path, settings)
    assert not W.xrv_weights_path().exists()

    model_file = build_tiny_xrv(tmp_path / "tiny.pt")
    row = W.import_model("xrv-densenet121-all", model_file, settings)
    assert row.ready and row.path == W.xrv_weights_path() and row.size_bytes == model_file.stat().st_size
    assert W.xrv_weights_path().parent == tmp_path / "xrv-cache"
    assert [p.name for p in W.xrv_weights_path().parent.iterdir()] == [W.xrv_weights_filename()]


def test_pull_reports_network_failure(settings: Settings) -> None:
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE  # the test session runs with HF_HUB_OFFLINE=1, as the CLI does
    # A closed local port: the download fails at once, exactly as with no network.
    with pytest.raises(BackendUnavailableError) as info:
        W.pull_model("medgemma-base", settings, endpoint="http://127.0.0.1:9")
    message = str(info.value)
    assert BASE_REPO in message and "medrag models import medgemma-base PATH" in message and "hf auth login" in message
    assert "ConnectError" in message  # it did try (pull lifts offline mode), and failed on the connection
    assert constants.HF_HUB_OFFLINE == before
    assert not W.model_status("medgemma-base", settings).ready


def test_pull_xrv_failure_leaves_no_partial_file(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from medrag.weights import download

    monkeypatch.setattr(download, "xrv_url", lambda weights: "http://127.0.0.1:9/weights.pt")
    with pytest.raises(BackendUnavailableError, match="medrag models import xrv-densenet121-all"):
        W.pull_model("xrv-densenet121-all", settings)
    assert list(W.xrv_cache_dir().iterdir()) == []


def test_pull_trivial_cases(settings: Settings, tiny_gemma: Path) -> None:
    assert W.pull_model("minilm", settings).ready
    with pytest.raises(ConfigError, match="nothing to pull"):
        W.pull_model("medgemma-reasoner", settings.with_overrides(hf_reasoner_model=str(tiny_gemma)))


def test_cache_folders_come_from_settings(
    settings: Settings, empty_caches: Path, tmp_path: Path, tiny_gemma: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings carries the HF and xrv cache folders (from the environment by default); an override wins."""
    from medrag.config import load_settings

    assert settings.hf_cache_dir == empty_caches and settings.xrv_cache_dir == tmp_path / "xrv-cache"
    other = tmp_path / "other-hf"
    other.mkdir()
    snapshot = make_hf_cache_entry(other, BASE_REPO, tiny_gemma)
    moved = settings.with_overrides(hf_cache_dir=other, xrv_cache_dir=tmp_path / "other-xrv")
    assert W.model_status("medgemma-base", moved).path == snapshot
    assert not W.model_status("medgemma-base", settings).ready
    assert W.hf_cache_dir(moved) == other and W.xrv_cache_dir(moved) == tmp_path / "other-xrv"
    assert W.model_status("xrv-densenet121-all", moved).detail.endswith(str(tmp_path / "other-xrv"))
    no_secrets = tmp_path / "absent-secrets.toml"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert load_settings(no_secrets, data_dir=tmp_path).hf_cache_dir == tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert load_settings(no_secrets, data_dir=tmp_path).hf_cache_dir == tmp_path / "legacy"


def test_hub_offline_blocks_requests_and_restores() -> None:
    from huggingface_hub import constants, get_session
    from huggingface_hub.errors import OfflineModeIsEnabled

    before = constants.HF_HUB_OFFLINE
    with W.hub_offline():
        assert constants.HF_HUB_OFFLINE is True
        with pytest.raises(OfflineModeIsEnabled):
            get_session().get("http://127.0.0.1:9/anything")
    assert constants.HF_HUB_OFFLINE == before


def test_fingerprint_and_size(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    first = W.file_fingerprint(f)
    assert first == "ba7816bf8f01cfea-3"  # sha256("abc")
    f.write_bytes(b"abcd")
    assert W.file_fingerprint(f) != first
    blob = tmp_path / ("e" * 64)
    blob.write_bytes(b"zz")
    link = tmp_path / "model.safetensors"
    link.symlink_to(blob)
    assert W.file_fingerprint(link) == "eeeeeeeeeeeeeeee-2"  # HF blob name is its sha256
    assert W.directory_size(tmp_path) == 4 + 2  # the symlinked blob counted once


def test_openclip_text_tower_repo_is_required(settings: Settings, empty_caches: Path, tmp_path: Path) -> None:
    """BiomedCLIP's config names a PubMedBERT repo whose config/tokenizer must be cached too."""
    src = tmp_path / "clip"
    src.mkdir()
    cfg = {"model_cfg": {"embed_dim": 8, "text_cfg": {"hf_model_name": "org/bert", "hf_tokenizer_name": "org/bert"}}}
    (src / "open_clip_config.json").write_text(json.dumps(cfg))
    (src / "open_clip_pytorch_model.bin").write_bytes(b"x")
    W.import_model("biomedclip", src, settings)
    row = W.model_status("biomedclip", settings)
    assert not row.ready and "org/bert" in row.detail and "medrag models pull biomedclip" in row.fix
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text("{}")
    make_hf_cache_entry(empty_caches, "org/bert", bert)
    assert W.model_status("biomedclip", settings).ready


def test_the_repository_weights_are_ready_checked_and_never_pulled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medrag.weights import status as S

    settings = Settings(data_dir=tmp_path / "data")
    for name in ("medrag-segmenter", "medrag-cnn"):
        ready = S.model_status(name, settings)
        assert ready.ready and ready.kind == "repo" and ready.size_bytes > 1_000_000, ready
        assert W.pull_model(name, settings).ready  # nothing to download: the status, no network
        with pytest.raises(ConfigError, match="committed in the repository"):
            W.import_model(name, tmp_path, settings)
    # A weights file that does not match its metadata is reported, with the way back.
    copy = tmp_path / "weights"
    copy.mkdir()
    for name in ("segment.safetensors", "segment.json", "medrag-cnn.json"):
        (copy / name).write_bytes((S.REPO_WEIGHTS_DIR / name).read_bytes())
    (copy / "medrag-cnn.safetensors").write_bytes(b"not the trained weights")
    original = S.REPO_WEIGHTS_DIR
    monkeypatch.setattr(S, "REPO_WEIGHTS_DIR", copy)
    broken = S.model_status("medrag-cnn", settings)
    assert not broken.ready and "differs from medrag-cnn.json" in broken.detail
    assert "git checkout -- medrag/reading/weights" in broken.fix and "cnn_train" in broken.fix
    assert S.model_status("medrag-segmenter", settings).ready
    # An ensemble is ready only with every member it names, each matching its checksum.
    (copy / "medrag-cnn.safetensors").write_bytes((original / "medrag-cnn.safetensors").read_bytes())
    meta = json.loads((copy / "medrag-cnn.json").read_text(encoding="utf-8"))
    member = {"file": "medrag-cnn-member9.safetensors", "sha256": hashlib.sha256(b"second").hexdigest()}
    meta["members"] = [*meta.get("members", []), member]
    for name in [m["file"] for m in meta["members"][:-1]]:
        (copy / name).write_bytes((original / name).read_bytes())
    (copy / "medrag-cnn.json").write_text(json.dumps(meta), encoding="utf-8")
    missing = S.model_status("medrag-cnn", settings)
    assert not missing.ready and "medrag-cnn-member9.safetensors is missing" in missing.detail
    (copy / "medrag-cnn-member9.safetensors").write_bytes(b"second")
    ensemble = S.model_status("medrag-cnn", settings)
    assert ensemble.ready and f"an ensemble of {len(meta['members']) + 1} networks" in ensemble.detail
    assert ensemble.size_bytes == sum((copy / n).stat().st_size for n in
                                      ["medrag-cnn.safetensors", *(m["file"] for m in meta["members"])])
    (copy / "medrag-cnn-member9.safetensors").write_bytes(b"changed")
    assert "member9.safetensors's sha256" in S.model_status("medrag-cnn", settings).detail
