"""Interrupts stop every long loop within ONE unit of work, counted exactly (no timing): the engine calls its
callback after every unit and does no further work once the callback raises, and the nodes' callback checks
ComfyUI's interrupt flag at every call, even when it thins the progress bar's updates. The server tests
(test_progress_interrupt) check the wiring through a real ComfyUI, in time."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES

import models.diception.pipeline as diception_pipeline
import models.persam.frames as frames
from models.diception import load_pipeline
from models.persam import make_reference
from models.persam.scale_aware import scale_aware_weights
from scripts.get_test_comfyui import DEFAULT_DEST


class Stop(Exception):
    pass


def stop_at(unit):
    seen = []

    def callback(done, total):
        seen.append(done)
        if len(seen) == unit:
            raise Stop

    return callback, seen


def counting(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_diception_does_no_denoising_step_after_the_callback_raises(monkeypatch, tmp_path):
    dice = FIXTURES / "diception" / "model"
    pipe = load_pipeline(dice / "tiny_sd3", dice / "diception_tiny.safetensors", torch.float32, tmp_path)
    forwards = counting(monkeypatch, diception_pipeline, "diception_forward")
    callback, seen = stop_at(3)
    with pytest.raises(Stop):
        pipe(torch.rand(2, 32, 32, 3), "depth", steps=5, guidance=2.0, resolution=64, batch_size=1, callback=callback)
    assert len(forwards) == 3 and seen == [1, 2, 3]  # one transformer call per step (CFG in one batch), none after


def test_the_persam_f_fit_reports_every_iteration():
    logits = torch.randn(3, 24, 24, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(24, 24, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    callback, seen = stop_at(10**9)
    scale_aware_weights(logits, target, iterations=300, callback=callback)
    assert seen == list(range(1, 301))
    callback, seen = stop_at(7)
    with pytest.raises(Stop):
        scale_aware_weights(logits, target, iterations=300, callback=callback)
    assert seen == list(range(1, 8))


def test_persam_segment_encodes_no_frame_after_the_callback_raises(monkeypatch, small_sam):
    sam = small_sam
    image = torch.rand(64, 80, 3, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(64, 80)
    mask[10:40, 20:50] = 1
    reference = make_reference(sam, image, mask)
    encodes = counting(monkeypatch, frames, "encode_images")
    callback, seen = stop_at(2)
    with pytest.raises(Stop):
        frames.segment_frames(sam, reference, torch.stack([image] * 5), batch_size=1, callback=callback)
    assert len(encodes) == 2 and seen == [1, 2]


@pytest.fixture()
def comfy_adapter(monkeypatch):
    """nodes/comfy_adapter.py on the test-engine ComfyUI's real comfy.model_management and comfy.utils."""
    if not (DEFAULT_DEST / "comfy").is_dir():
        pytest.fail(f"no test-engine ComfyUI at {DEFAULT_DEST}: run `python scripts/get_test_comfyui.py`")
    monkeypatch.syspath_prepend(str(DEFAULT_DEST))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    path = Path(__file__).resolve().parent.parent / "nodes" / "comfy_adapter.py"
    spec = importlib.util.spec_from_file_location("comfy_adapter_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("comfy_adapter_under_test", None)


def test_the_nodes_progress_checks_the_interrupt_at_every_call_even_when_thinned(comfy_adapter):
    import comfy.model_management as mm

    progress = comfy_adapter.Progress(1000, min_interval=3600)  # the bar is updated once an hour at most
    progress(1, 1000)
    progress(2, 1000)
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            progress(3, 1000)
    finally:
        mm.interrupt_current_processing(False)
    progress(4, 1000)
