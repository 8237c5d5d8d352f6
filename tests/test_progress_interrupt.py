"""Progress and interrupts through the real server, one test per node contract: Perceive Task's bar advances per
step and per image; an interrupt stops a DICEPTION run (Perceive Task) and a maximal PerSAM-F fit (PerSAM Reference)
soon after /interrupt, in a time of a few of their own units of work; the next prompt succeeds. That every loop stops
within ONE unit is checked exactly, without timing, in-process (tests/test_interrupt_granularity.py); progress
messages that arrive here after /interrupt were sent before it (the pack checks for an interrupt before it reports a
step), so their count measures the websocket, not the pack, and is not asserted."""

import time

import numpy as np
from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from graphs import PERSAM, diception_graph, persam_graph, reference_png
from PIL import Image
from server_messages import ITERATIONS_WITHIN, REPLY_S, progress_of, stopped_after, with_listener  # noqa: F401 (progress_of, with_listener: also imported from here)


def test_progress_advances_per_step_and_chunk(comfy):
    """The bar counts image-steps: one image per call advances it by 1 per step, a chunk of 2 by 2."""
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    _, messages = with_listener(comfy, lambda _: comfy.run(diception_graph(name, batch=2, steps=3, seed=11, batch_size=1)))
    values = [(p["value"], p["max"]) for p in progress_of(messages)]
    assert values == [(i, 6) for i in range(1, 7)], values
    _, messages = with_listener(comfy, lambda _: comfy.run(diception_graph(name, batch=3, steps=2, seed=11, batch_size=2, prefix="chunks")))
    values = [(p["value"], p["max"]) for p in progress_of(messages)]
    assert values == [(2, 6), (4, 6), (5, 6), (6, 6)], values


def test_interrupt_stops_perceive_task_within_a_few_steps(comfy):
    """Wired to ComfyUI's interrupt: the run stops long before its 150 steps."""
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    steps = 150

    def interrupt_midway(messages):
        prompt_id = comfy.queue(diception_graph(name, steps=steps, seed=12))
        deadline = time.time() + 120
        while not any(p["value"] >= 3 for p in progress_of(messages)) and time.time() < deadline:
            time.sleep(0.01)
        comfy.interrupt()
        sent = time.time()
        return comfy.wait(prompt_id), sent

    (entry, sent), messages = with_listener(comfy, interrupt_midway)
    assert entry["status"]["status_str"] == "error"
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"])
    updates = [(t, m["data"]["value"]) for t, m in messages if m["type"] == "progress" and t <= sent]
    (t1, v1), (t2, v2) = updates[0], updates[-1]
    per_step = (t2 - t1) / max(v2 - v1, 1)
    reached = max(m["data"]["value"] for _, m in messages if m["type"] == "progress")
    received = [t for t, m in messages if m["type"] == "execution_interrupted"]
    latency, bound = stopped_after(entry, sent, received), ITERATIONS_WITHIN * per_step + REPLY_S
    print(f"\nDICEPTION interrupted at step {reached} of {steps} ({per_step * 1000:.0f} ms per step); stopped {latency:.3f} s after /interrupt")
    assert reached < steps and latency < bound, f"stopped {latency:.2f} s after /interrupt (bound {bound:.2f} s), at step {reached}"
    assert comfy.run(diception_graph(name, prefix="after_interrupt"))["status"]["status_str"] == "success"


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
    """Before issue 12, PerSAM-F checked for an interrupt every ``iterations // 50`` steps (every 200 here)."""
    reference_png(comfy, "interrupt_ref.png")  # also writes the test photo the graph segments
    graph = persam_graph(big_reference(comfy), fine_tune=True, batch=1)
    graph["reference"]["inputs"]["iterations"] = 10000

    def interrupt_during_the_fit(messages):
        prompt_id = comfy.queue(graph)
        deadline = time.time() + 300
        while len(progress_of(messages, "reference")) < 2 and time.time() < deadline:  # two updates: the fit's pace
            time.sleep(0.01)
        assert len(progress_of(messages, "reference")) >= 2, "the fit never reported progress twice"
        comfy.interrupt()
        sent = time.time()
        return comfy.wait(prompt_id, timeout=300), sent

    (entry, sent), messages = with_listener(comfy, interrupt_during_the_fit)
    stopped = [t for t, m in messages if m["type"] in ("execution_interrupted", "execution_error")]
    assert entry["status"]["status_str"] == "error"
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"])
    updates = [(t, m["data"]["value"]) for t, m in messages if m["type"] == "progress" and m["data"].get("node") in ("reference", None) and t <= sent]
    (t1, v1), (t2, v2) = updates[0], updates[-1]
    per_iteration = (t2 - t1) / max(v2 - v1, 1)
    assert v2 < 10000, "the fit finished before the interrupt: nothing was measured"
    latency = stopped_after(entry, sent, stopped)
    bound = ITERATIONS_WITHIN * per_iteration + REPLY_S
    print(f"\nPerSAM-F fit interrupted after iteration {v2} of 10000 ({per_iteration * 1000:.1f} ms per iteration here); "
          f"stopped {latency:.3f} s after /interrupt (bound {bound:.2f} s)")
    assert latency < bound, f"stopped {latency:.2f} s after /interrupt: more than {ITERATIONS_WITHIN} iterations of {per_iteration:.3f} s + {REPLY_S} s"
    try:
        assert comfy.run(persam_graph("interrupt_ref.png", batch=1))["status"]["status_str"] == "success"
    except ComfyError as e:
        raise AssertionError(f"the next prompt failed: {error_message(e.body)}") from None
