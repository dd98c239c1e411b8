"""medrag.devices: device and dtype choice, with the accelerators simulated."""

from __future__ import annotations

import pytest
import torch

from medrag.devices import select_device, select_dtype
from medrag.errors import ConfigError


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDRAG_DEVICE", raising=False)


def _accelerators(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_prefers_cuda_then_mps_then_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, expected: str
) -> None:
    _accelerators(monkeypatch, cuda, mps)
    assert select_device() == expected


def test_override_from_argument_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _accelerators(monkeypatch, cuda=True, mps=False)
    assert select_device("cpu") == "cpu"
    monkeypatch.setenv("MEDRAG_DEVICE", "cuda:1")
    assert select_device() == "cuda:1"
    monkeypatch.setenv("MEDRAG_DEVICE", "CPU")
    assert select_device() == "cpu"


def test_bad_or_unavailable_device(monkeypatch: pytest.MonkeyPatch) -> None:
    _accelerators(monkeypatch, cuda=False, mps=False)
    with pytest.raises(ConfigError, match="auto, cpu, cuda or mps"):
        select_device("tpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        select_device("cuda")
    with pytest.raises(ConfigError, match="mps"):
        select_device("mps")


def test_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert select_dtype("cpu") == torch.float32
    assert select_dtype("mps") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert select_dtype("cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert select_dtype("cuda:0") == torch.float32


def test_this_machine_without_gpu_is_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert select_device() in {"cpu", "mps"}


def test_settings_device_is_validated_without_torch() -> None:
    from medrag.config import Settings

    assert Settings().device == "auto" and Settings().torch_device is None
    assert Settings(device=" CUDA:1 ").torch_device == "cuda:1"
    for bad in ("gpu", "cuda:x", "cpu:0", "tpu"):
        with pytest.raises(ConfigError, match="MEDRAG_DEVICE"):
            Settings(device=bad)
