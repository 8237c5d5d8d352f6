"""Where the text encoders run (nodes/text_encoder_device.py), decided from ComfyUI's own device policy and
memory figures. The test machine has no GPU: these tests STAND IN FOR GPUs by patching the figures the policy
reads in the real comfy.model_management of the test-engine ComfyUI (text_encoder_device,
text_encoder_offload_device, get_total_memory, get_free_memory, free_memory)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from scripts.get_test_comfyui import DEFAULT_DEST

GB = 1024**3
SD3_TEXT_ENCODERS = int(11.2e9)  # CLIP-L + CLIP-G + T5-XXL in bf16 (README, real parameter counts)
CUDA, CPU = torch.device("cuda", 0), torch.device("cpu")


@pytest.fixture()
def policy(monkeypatch):
    if not (DEFAULT_DEST / "comfy").is_dir():
        pytest.fail(f"no test-engine ComfyUI at {DEFAULT_DEST}: run `python scripts/get_test_comfyui.py`")
    monkeypatch.syspath_prepend(str(DEFAULT_DEST))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # as the test engine starts (main.py --cpu): no GPU driver is probed
    import comfy.model_management as mm

    path = Path(__file__).resolve().parent.parent / "nodes" / "text_encoder_device.py"
    spec = importlib.util.spec_from_file_location("text_encoder_device_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module, mm
    sys.modules.pop("text_encoder_device_under_test", None)


def gpu(monkeypatch, mm, total, free, freed_to=None, policy_device=CUDA):
    """A stand-in GPU: ComfyUI's policy says ``policy_device``; ``total``/``free`` bytes; ``free_memory`` frees up to ``freed_to``."""
    state = {"free": free, "free_memory_calls": []}
    monkeypatch.setattr(mm, "text_encoder_device", lambda: policy_device)
    monkeypatch.setattr(mm, "text_encoder_offload_device", lambda: CPU)
    monkeypatch.setattr(mm, "get_total_memory", lambda dev=None, torch_total_too=False: total if dev == CUDA else 64 * GB)
    monkeypatch.setattr(mm, "get_free_memory", lambda dev=None, torch_free_too=False: state["free"] if dev == CUDA else 64 * GB)

    def free_memory(required, device, keep_loaded=[]):
        state["free_memory_calls"].append((required, device))
        if freed_to is not None:
            state["free"] = freed_to

    monkeypatch.setattr(mm, "free_memory", free_memory)
    return state


def test_a_gpu_too_small_for_t5_xxl_runs_them_on_the_cpu_without_unloading_anything(policy, monkeypatch):
    module, mm = policy
    state = gpu(monkeypatch, mm, total=8 * GB, free=7.5 * GB)
    assert module.text_encoder_device(SD3_TEXT_ENCODERS) == CPU
    assert state["free_memory_calls"] == []  # no forced load, no eviction for a load that cannot fit


def test_a_large_gpu_with_free_memory_runs_them_there(policy, monkeypatch):
    module, mm = policy
    gpu(monkeypatch, mm, total=24 * GB, free=22 * GB)
    assert module.text_encoder_device(SD3_TEXT_ENCODERS) == CUDA


def test_a_large_gpu_holding_other_models_frees_memory_first(policy, monkeypatch):
    module, mm = policy
    state = gpu(monkeypatch, mm, total=24 * GB, free=6 * GB, freed_to=20 * GB)
    assert module.text_encoder_device(SD3_TEXT_ENCODERS) == CUDA
    (required, device), = state["free_memory_calls"]
    assert device == CUDA and required == pytest.approx(SD3_TEXT_ENCODERS * 1.2 + mm.minimum_inference_memory())


def test_when_memory_cannot_be_freed_they_run_on_the_cpu(policy, monkeypatch):
    module, mm = policy
    gpu(monkeypatch, mm, total=24 * GB, free=6 * GB, freed_to=7 * GB)
    assert module.text_encoder_device(SD3_TEXT_ENCODERS) == CPU


def test_comfyuis_low_vram_policy_keeps_them_on_the_cpu(policy, monkeypatch):
    module, mm = policy
    gpu(monkeypatch, mm, total=24 * GB, free=22 * GB, policy_device=CPU)
    assert module.text_encoder_device(SD3_TEXT_ENCODERS) == CPU
