"""PerSAM nodes through the real ComfyUI server."""

import io

import numpy as np
import pytest
from comfy_server import ComfyError, error_message
from graphs import persam_graph, reference_png
from PIL import Image


@pytest.mark.parametrize("fine_tune", [False, True])
def test_persam_segments_a_batch_of_four(comfy, fine_tune):
    entry = comfy.run(persam_graph(reference_png(comfy), fine_tune=fine_tune))
    masks = entry["outputs"]["save_masks"]["images"]
    assert len(masks) == 4 and len(entry["outputs"]["save_preview"]["images"]) == 4
    first = np.asarray(Image.open(io.BytesIO(comfy.view(masks[0]))))
    assert first.shape[:2] == (240, 320) and first.max() == 255  # the subject was found


def test_persam_points_drive_diception_point_segmentation(comfy):
    graph = persam_graph(reference_png(comfy), batch=1)
    graph["model"] = {"class_type": "DiceptionLoad", "inputs": {"base_model": "tiny_sd3", "checkpoint": "diception_tiny.pth", "dtype": "fp32"}}
    graph["perceive"] = {"class_type": "DiceptionPerceiveTask", "inputs": {
        "model": ["model", 0], "image": ["test_image", 0], "task": "point segmentation", "category": "none",
        "points": ["segment", 1], "steps": 1, "guidance": 1.0, "seed": 0, "resolution": 64}}
    graph["save_answer"] = {"class_type": "SaveImage", "inputs": {"images": ["perceive", 0], "filename_prefix": "persam_dice"}}
    entry = comfy.run(graph)
    answer = Image.open(io.BytesIO(comfy.view(entry["outputs"]["save_answer"]["images"][0])))
    assert answer.size == (320, 240)


def expect_error(comfy, graph, text):
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    assert text in error_message(e.value.body), error_message(e.value.body)


def test_persam_bad_inputs_are_clear_errors(comfy, tmp_path):
    expect_error(comfy, persam_graph(reference_png(comfy, "empty_ref.png", empty=True)), "reference mask is empty")
    not_sam = comfy.dirs["models"] / "sams" / "not_sam.pth"
    import torch

    torch.save({"weight": torch.zeros(2)}, not_sam)
    expect_error(comfy, persam_graph(reference_png(comfy), sam="not_sam.pth"), "not a Segment Anything checkpoint")
    small = comfy.dirs["input"] / "tiny.png"
    Image.new("RGBA", (20, 20)).save(small)
    expect_error(comfy, persam_graph("tiny.png"), "at least 32 px")
    assert comfy.run(persam_graph(reference_png(comfy), batch=1))["status"]["status_str"] == "success"


def test_persam_finds_several_instances(comfy):
    graph = persam_graph(reference_png(comfy), batch=1)
    graph["segment"]["inputs"].update({"max_instances": 3, "overlap_stop": 1.0})
    graph["points"] = {"class_type": "PreviewImage", "inputs": {"images": ["segment", 2]}}
    entry = comfy.run(graph)
    mask = np.asarray(Image.open(io.BytesIO(comfy.view(entry["outputs"]["save_masks"]["images"][0]))))[..., 0] > 127
    single = comfy.run(persam_graph(reference_png(comfy), batch=1))
    one = np.asarray(Image.open(io.BytesIO(comfy.view(single["outputs"]["save_masks"]["images"][0]))))[..., 0] > 127
    assert mask.sum() > one.sum() and (mask | one).sum() == mask.sum()  # the union grew beyond the first instance
