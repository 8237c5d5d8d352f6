"""scripts/queue_workflow.py: ``--set`` sends what each input's declared type expects (a JSON value for a STRING widget
becomes its text; a list elsewhere is a link, or a clear error). Its runs of the shipped workflows, with the points
typed in and every output file downloaded (Save Depth's .npy included): test_workflows.py."""

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.queue_workflow import apply_overrides

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "DiceptionLoad.base_model=tiny_sd3", "DiceptionLoad.checkpoint=diception_tiny.safetensors", "DiceptionLoad.dtype=fp32",
    "DiceptionPerceiveTask.resolution=64", "DiceptionPerceiveTask.steps=1",
]
INFO = {"DiceptionPerceiveTask": {"input": {"required": {
    "points": ["STRING", {"multiline": True}], "steps": ["INT", {"default": 1}], "task": [["depth", "normal"], {}],
    "image": ["IMAGE"]}}}, "LoadImage": {"input": {"required": {"image": [["a.png"], {}]}}, "output": ["IMAGE", "MASK"]}}


def queue(comfy, name, tmp_path, *overrides):
    cmd = [sys.executable, str(ROOT / "scripts" / "queue_workflow.py"), str(ROOT / "workflows" / "api" / f"{name}.json"),
           "--port", comfy.url.rsplit(":", 1)[1], "--out", str(tmp_path / "out"),
           "--image", str(ROOT / "workflows" / "images" / "example_scene.png")]
    cmd += [a for s in TINY + list(overrides) for a in ("--set", s)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_set_sends_the_type_each_input_declares():
    workflow = {"1": {"class_type": "LoadImage", "inputs": {}}, "3": {"class_type": "DiceptionPerceiveTask", "inputs": {}}}
    apply_overrides(workflow, ['DiceptionPerceiveTask.points=[{"x":5,"y":5}]', "DiceptionPerceiveTask.steps=4",
                               "DiceptionPerceiveTask.image=[1, 0]", "DiceptionPerceiveTask.task=normal"], INFO)
    assert workflow["3"]["inputs"] == {"points": '[{"x":5,"y":5}]', "steps": 4, "image": ["1", 0], "task": "normal"}
    for link in ("[5, 5]", "[1, 2]"):  # no node 5; Load Image has outputs 0 and 1
        with pytest.raises(ValueError, match=r"steps=\[.*takes INT.*link \[node_id, output_index\]"):
            apply_overrides(workflow, [f"DiceptionPerceiveTask.steps={link}"], INFO)
    assert apply_overrides({"1": {"class_type": "X", "inputs": {}}}, ["X.a=[1, 2]"])["1"]["inputs"]["a"] == [1, 2]
    with pytest.raises(ValueError, match="has no input 'point'; its inputs: points, steps, task, image"):
        apply_overrides(workflow, ["DiceptionPerceiveTask.point=[]"], INFO)


def test_a_list_for_a_number_input_is_a_clear_error(comfy, tmp_path):
    done = queue(comfy, "diception_depth", tmp_path, "DiceptionPerceiveTask.steps=[2, 3]")
    assert done.returncode == 1
    assert "takes INT" in done.stderr and "link [node_id, output_index]" in done.stderr, done.stderr
