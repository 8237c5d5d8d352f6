"""DICEPTION nodes through the real ComfyUI server: every task on a batch, and clear errors."""

import io
import pickle

import pytest
from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from graphs import diception_graph
from PIL import Image

TASKS = [
    ("depth", {}),
    ("normal", {}),
    ("point segmentation", {"points": '[{"x": 10, "y": 20}, {"x": 80, "y": 60}]'}),
    ("entity segmentation", {}),
    ("semantic segmentation", {"category": "dog"}),
    ("pose", {}),
]


@pytest.mark.parametrize("task,extra", TASKS, ids=[t for t, _ in TASKS])
def test_every_task_on_a_batch_of_three_non_square_images(comfy, task, extra):
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    entry = comfy.run(diception_graph(name, batch=3, task=task, prefix=f"task_{task.split()[0]}", **extra))
    images = entry["outputs"]["save"]["images"]
    assert len(images) == 3
    for image in images:
        assert Image.open(io.BytesIO(comfy.view(image))).size == (96, 72)


def test_cfg_runs_with_several_steps(comfy):
    name = save_fixture_image(comfy, FIXTURES / "diception/images/square_64x64.png", "square.png")
    assert comfy.run(diception_graph(name, steps=3, guidance=2.0))["status"]["status_str"] == "success"


def failure(comfy, graph):
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    return error_message(e.value.body)


BAD_PERCEIVE = [
    ({"task": "point segmentation", "points": '[{"x": 96, "y": 10}]'}, "outside the 96x72 image"),
    ({"task": "point segmentation", "points": str([{"x": i, "y": i} for i in range(6)]).replace("'", '"')}, "at most 5 points"),
    ({"task": "point segmentation", "points": "[{x: 1}"}, "not valid JSON"),
    ({"task": "point segmentation", "points": "[]"}, "needs 1 to 5 points"),
    ({"task": "semantic segmentation", "category": "none"}, "needs a COCO category"),
    ({"resolution": 72}, "multiple of 16"),
]


@pytest.mark.parametrize("inputs,message", BAD_PERCEIVE, ids=[m for _, m in BAD_PERCEIVE])
def test_bad_perceive_inputs_are_clear_errors(comfy, inputs, message):
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    assert message in failure(comfy, diception_graph(name, **inputs))


def test_points_left_from_the_point_task_are_ignored_by_other_tasks_with_a_log_note(comfy):
    """Issue 11 item 2: a graph saved with points and switched to depth runs (the picker keeps the points)."""
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    leftover = '[{"x": 500, "y": 5}]'  # not even inside this image: unused, so not checked
    entry = comfy.run(diception_graph(name, task="depth", points=leftover, prefix="leftover_points"))
    assert entry["status"]["status_str"] == "success"
    assert "task 'depth' ignores the points" in comfy.log_path.read_text()


def test_bad_weights_are_clear_errors(comfy):
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    folder = comfy.dirs["models"] / "diception"
    (folder / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    (folder / "pickled.pth").write_bytes(pickle.dumps({"transformer": print}))
    for checkpoint, message in (("corrupt.safetensors", "only zero bytes"), ("pickled.pth", "plain Python pickle")):
        graph = diception_graph(name)
        graph["model"]["inputs"]["checkpoint"] = checkpoint
        assert message in failure(comfy, graph)
    (folder / "broken_sd3").mkdir(exist_ok=True)
    (folder / "broken_sd3" / "model_index.json").write_text("{}")
    graph = diception_graph(name)
    graph["model"]["inputs"]["base_model"] = "broken_sd3"
    assert "missing ['transformer'" in failure(comfy, graph)
    assert comfy.run(diception_graph(name))["status"]["status_str"] == "success"
