"""One device resolver for every engine."""

from __future__ import annotations

import pytest

from dubbing_assets.core.device import ctranslate2_device, torch_device
from dubbing_assets.errors import ConfigError


def test_explicit_devices_pass_and_auto_resolves_here() -> None:
    assert torch_device("cpu") == "cpu" and torch_device("CUDA:1") == "cuda:1"
    import torch

    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert torch_device(None) == torch_device("auto")


def test_ctranslate2_takes_int8_on_cpu_and_float16_on_cuda() -> None:
    assert ctranslate2_device("cpu") == ("cpu", "int8")
    assert ctranslate2_device("cuda") == ("cuda", "float16")
    assert ctranslate2_device("cpu", "float32") == ("cpu", "float32")
    with pytest.raises(ConfigError, match="CTranslate2"):
        ctranslate2_device("cuda:1")


@pytest.mark.parametrize("bad", ["gpu", "tpu", "cuda:x", "cpu "  "1"])
def test_a_bad_device_names_the_setting(bad: str) -> None:
    for resolve in (torch_device, ctranslate2_device):
        with pytest.raises(ConfigError, match="DUBBING_DEVICE"):
            resolve(bad)
