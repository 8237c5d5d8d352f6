"""PerSAM nodes through the real ComfyUI server."""

import io

import numpy as np
import pytest
from comfy_server import FIXTURES, ComfyError, error_message
from PIL import Image

PERSAM = FIXTURES / "persam" / "data"


def reference_png(comfy, name="persam_ref.png", empty=False):
    """The fixture reference as LoadImage reads masks: RGBA with alpha 0 on the subject (mask = 1 − alpha)."""
    rgb = np.asarray(Image.open(PERSAM / "ref.png").convert("RGB"))
    subject = np.asarray(Image.open(PERSAM / "ref_mask.png").convert("RGB"))[..., 0] > 0
    alpha = np.where(subject & (not empty), 0, 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(comfy.dirs["input"] / name)
    Image.open(PERSAM / "test1.png").convert("RGB").save(comfy.dirs["input"] / "persam_test1.png")
    return name


def persam_graph(ref_name, fine_tune=False, batch=4, sam="tiny_sam.pth"):
    return {
        "ref_image": {"class_type": "LoadImage", "inputs": {"image": ref_name}},
        "test_image": {"class_type": "LoadImage", "inputs": {"image": "persam_test1.png"}},
        "batch": {"class_type": "RepeatImageBatch", "inputs": {"image": ["test_image", 0], "amount": batch}},
        "sam": {"class_type": "PersamSamLoader", "inputs": {"checkpoint": sam}},
        "reference": {"class_type": "PersamReference", "inputs": {
            "sam": ["sam", 0], "image": ["ref_image", 0], "mask": ["ref_image", 1], "fine_tune": fine_tune,
            "box": "", "iterations": 50}},
        "segment": {"class_type": "PersamSegment", "inputs": {"reference": ["reference", 0], "images": ["batch", 0]}},
        "mask_image": {"class_type": "MaskToImage", "inputs": {"mask": ["segment", 0]}},
        "save_masks": {"class_type": "SaveImage", "inputs": {"images": ["mask_image", 0], "filename_prefix": "persam_mask"}},
        "save_preview": {"class_type": "SaveImage", "inputs": {"images": ["segment", 2], "filename_prefix": "persam_preview"}},
    }


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
