"""DICEPTION nodes through the real ComfyUI server: every task on a batch, and clear errors."""

import io

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


def test_every_task_on_a_batch_of_three_non_square_images(comfy):
    """One graph: one Load DICEPTION feeding a Perceive Task per task (CFG with several steps: the prompt cache and
    text-encoder tests)."""
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    graph = diception_graph(name, batch=3)
    template = graph.pop("perceive")
    graph.pop("save")
    for i, (task, extra) in enumerate(TASKS):
        graph[f"perceive{i}"] = {"class_type": template["class_type"], "inputs": dict(template["inputs"], task=task, **extra)}
        graph[f"save{i}"] = {"class_type": "SaveImage", "inputs": {"images": [f"perceive{i}", 0], "filename_prefix": f"task_{task.split()[0]}"}}
    entry = comfy.run(graph)
    for i, (task, _) in enumerate(TASKS):
        images = entry["outputs"][f"save{i}"]["images"]
        assert len(images) == 3, task
        for image in images:
            assert Image.open(io.BytesIO(comfy.view(image))).size == (96, 72), task


def failure(comfy, graph):
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    return error_message(e.value.body)


def test_perceive_task_passes_the_engines_refusal_on(comfy):
    """Category "none" is the node's word for no category: the engine's refusal names the input. The engine's other
    rules (points, resolution, batches) are tested in-process; one bad point list goes through the server in
    test_hostile_inputs.py."""
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    assert "category: the semantic segmentation task needs a COCO category" in failure(
        comfy, diception_graph(name, task="semantic segmentation", category="none"))


def test_points_left_from_the_point_task_are_ignored_by_other_tasks_with_a_log_note(comfy):
    """Issue 11 item 2: a graph saved with points and switched to depth runs (the picker keeps the points)."""
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    leftover = '[{"x": 500, "y": 5}]'  # not even inside this image: unused, so not checked
    entry = comfy.run(diception_graph(name, task="depth", points=leftover, prefix="leftover_points"))
    assert entry["status"]["status_str"] == "success"
    assert "task 'depth' ignores the points" in comfy.log_path.read_text()
