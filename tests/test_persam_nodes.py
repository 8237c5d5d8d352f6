"""PerSAM nodes through the real ComfyUI server. PerSAM Segment on batches and its points into Perceive Task:
test_persam_batches.py."""

import io

import numpy as np
import pytest
from comfy_server import ComfyError, error_message
from graphs import persam_graph, reference_png
from PIL import Image


def test_persam_f_segments_a_batch_of_four(comfy):
    """PerSAM-F (the fine-tuned reference); the training-free one runs in most other PerSAM server tests."""
    entry = comfy.run(persam_graph(reference_png(comfy), fine_tune=True))
    masks = entry["outputs"]["save_masks"]["images"]
    assert len(masks) == 4 and len(entry["outputs"]["save_preview"]["images"]) == 4
    first = np.asarray(Image.open(io.BytesIO(comfy.view(masks[0]))))
    assert first.shape[:2] == (240, 320) and first.max() == 255  # the subject was found


def expect_error(comfy, graph, text):
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    assert text in error_message(e.value.body), error_message(e.value.body)


def test_persam_reference_mask_and_box_errors_name_the_input(comfy):
    """The node's own rules (a box instead of an empty mask); the engine's (mask size, image size, SAM files) are
    tested in-process (test_persam_inputs.py, test_weight_files.py)."""
    empty = reference_png(comfy, "empty_ref.png", empty=True)
    expect_error(comfy, persam_graph(empty, batch=1), "reference mask is empty")
    graph = persam_graph(empty, batch=1)
    graph["reference"]["inputs"]["box"] = "10, 10, 5"
    expect_error(comfy, graph, "box: expected 'x0, y0, x1, y1'")
    graph["reference"]["inputs"]["box"] = "40, 30, 200, 180"  # a box instead of a mask works
    assert comfy.run(graph)["status"]["status_str"] == "success"
