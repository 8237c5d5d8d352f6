"""Interrupts on a time cadence (issue 12, item 2), through the real server with bounded waits.

Before: PerSAM-F checked for an interrupt every ``iterations // 50`` steps and ``iterations`` was never
range-checked, so ``iterations = 10**9`` ran on, uninterruptible for minutes. Now the value is refused at
once, and a maximal fit (10 000 iterations on a large reference) stops within one iteration of /interrupt.
"""

import time

import numpy as np
from comfy_server import ComfyError, error_message
from PIL import Image
from test_persam_nodes import PERSAM, persam_graph, reference_png
from test_progress_interrupt import progress_of, with_listener

STOP_WITHIN_S = 3.0  # one iteration (a full loss evaluation on 0.3 MP) on a loaded 2-core machine, and the reply


def test_a_billion_iterations_are_refused_at_once(comfy):
    graph = persam_graph(reference_png(comfy, "interrupt_ref.png"), fine_tune=True, batch=1)
    graph["reference"]["inputs"]["iterations"] = 10**9
    try:
        prompt_id = comfy.queue(graph)
    except ComfyError as e:  # ComfyUI v0.8.0+ checks optional inputs itself: a 400 naming the input and its max
        errors = e.body["node_errors"]["reference"]["errors"]
        assert comfy.build.at_least(0, 8, 0), e.body
        assert errors[0]["extra_info"]["input_name"] == "iterations" and "bigger than max of 10000" in errors[0]["message"]
        return
    try:
        entry = comfy.wait(prompt_id, timeout=60)
    except TimeoutError:
        comfy.interrupt()
        raise AssertionError("iterations = 10**9 was neither refused nor finished within 60 s") from None
    assert entry["status"]["status_str"] == "error"
    assert "iterations: expected an integer in [1, 10000], got 1000000000" in error_message(entry)


def big_reference(comfy, name="interrupt_big_ref.png", scale=2) -> str:
    """The fixture reference upscaled (640×480): PerSAM-F's loss is evaluated on every pixel, so a fit of
    10 000 iterations takes many seconds here."""
    rgb = Image.open(PERSAM / "ref.png").convert("RGB")
    size = (rgb.width * scale, rgb.height * scale)
    subject = np.asarray(Image.open(PERSAM / "ref_mask.png").convert("RGB").resize(size, Image.NEAREST))[..., 0] > 0
    alpha = np.where(subject, 0, 255).astype(np.uint8)  # LoadImage: mask = 1 − alpha
    Image.fromarray(np.dstack([np.asarray(rgb.resize(size, Image.BICUBIC)), alpha]), "RGBA").save(comfy.dirs["input"] / name)
    return name


def test_a_maximal_persam_f_fit_stops_soon_after_an_interrupt(comfy):
    reference_png(comfy, "interrupt_ref.png")  # also writes the test photo the graph segments
    graph = persam_graph(big_reference(comfy), fine_tune=True, batch=1)
    graph["reference"]["inputs"]["iterations"] = 10000

    def interrupt_during_the_fit(messages):
        prompt_id = comfy.queue(graph)
        deadline = time.time() + 180
        while not progress_of(messages, "reference") and time.time() < deadline:
            time.sleep(0.01)
        assert progress_of(messages, "reference"), "the fit never reported progress"
        comfy.interrupt()
        sent = time.time()
        return comfy.wait(prompt_id, timeout=120), sent

    (entry, sent), messages = with_listener(comfy, interrupt_during_the_fit)
    stopped = [t for t, m in messages if m["type"] in ("execution_interrupted", "execution_error")]
    assert entry["status"]["status_str"] == "error"
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"])
    done = [p["value"] for p in progress_of(messages, "reference")]
    assert max(done) < 10000, "the fit finished before the interrupt: nothing was measured"
    latency = stopped[0] - sent if stopped else float("inf")
    print(f"\nPerSAM-F fit interrupted at iteration {max(done)} of 10000; stopped {latency:.3f} s after /interrupt")
    assert latency < STOP_WITHIN_S, f"stopped {latency:.2f} s after /interrupt"
    try:
        assert comfy.run(persam_graph("interrupt_ref.png", batch=1))["status"]["status_str"] == "success"
    except ComfyError as e:
        raise AssertionError(f"the next prompt failed: {error_message(e.body)}") from None
