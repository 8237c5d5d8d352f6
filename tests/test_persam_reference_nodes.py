"""PerSAM Reference with several references, negatives and another pack's SAM_MODEL, through a real server.

The session's servers load tests/persam_source_nodes beside the pack (a SAM_MODEL made as
storyicon/comfyui_segment_anything's loader makes it, and a list of images of different sizes; tests/comfy_server.py);
the experiment with that pack's own code is recorded in README "Several references".
"""

import io

import numpy as np
import pytest
from comfy_server import ComfyError, error_message
from PIL import Image

from persam_synthetic import build_set


@pytest.fixture(scope="module")
def server(comfy):
    return comfy


def rgba(image, mask):
    """LoadImage reads a mask as 1 − alpha."""
    return np.dstack([image, np.where(mask, 0, 255).astype(np.uint8)])


@pytest.fixture(scope="module")
def pictures(server):
    """ref_pair.png: an animated PNG of the two reference looks (LoadImage → an IMAGE and a MASK batch of 2);
    ref_pair_empty.png: the same with the second mask empty; ref_a.png / ref_b.png (its two frames) / test.png
    single images."""
    references, negative, test = build_set(tests=2)
    frames = [Image.fromarray(rgba(r.image, r.subject), "RGBA") for r in references]
    frames[0].save(server.dirs["input"] / "ref_pair.png", save_all=True, append_images=frames[1:])
    empty = Image.fromarray(rgba(references[1].image, np.zeros_like(references[1].subject)), "RGBA")
    frames[0].save(server.dirs["input"] / "ref_pair_empty.png", save_all=True, append_images=[empty])
    frames[0].save(server.dirs["input"] / "ref_a.png")
    frames[1].save(server.dirs["input"] / "ref_b.png")
    Image.fromarray(test[1].image).save(server.dirs["input"] / "test.png")
    Image.fromarray(rgba(negative.image, negative.distractor), "RGBA").save(server.dirs["input"] / "negative.png")
    Image.fromarray(rgba(negative.image, negative.subject), "RGBA").save(server.dirs["input"] / "negative_as_subject.png")
    return references


def graph(reference_inputs, sam="loader", refs="ref_pair.png"):
    nodes = {
        "refs": {"class_type": "LoadImage", "inputs": {"image": refs}},
        "test": {"class_type": "LoadImage", "inputs": {"image": "test.png"}},
        "reference": {"class_type": "PersamReference", "inputs": {
            "image": ["refs", 0], "mask": ["refs", 1], "fine_tune": False, "box": "", "iterations": 20, **reference_inputs}},
        "segment": {"class_type": "PersamSegment", "inputs": {"reference": ["reference", 0], "images": ["test", 0]}},
        "mask_image": {"class_type": "MaskToImage", "inputs": {"mask": ["segment", 0]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["mask_image", 0], "filename_prefix": "refs"}},
    }
    if sam == "loader":
        nodes["sam"] = {"class_type": "PersamSamLoader", "inputs": {"checkpoint": "tiny_sam.pth"}}
        nodes["reference"]["inputs"]["sam"] = ["sam", 0]
    else:
        nodes["other"] = {"class_type": "TestSamModelLoader", "inputs": {"variant": sam}}
        nodes["reference"]["inputs"]["sam_model"] = ["other", 0]
    return nodes


def saved_mask(server, entry):
    return np.asarray(Image.open(io.BytesIO(server.view(entry["outputs"]["save"]["images"][0]))))


def expect_error(server, nodes, *texts):
    with pytest.raises(ComfyError) as e:
        server.run(nodes)
    message = error_message(e.value.body)
    assert all(t in message for t in texts), message


def test_a_batch_of_references_and_a_negative_segment(server, pictures):
    entry = server.run(graph({}))
    assert saved_mask(server, entry).shape[:2] == (128, 128)
    nodes = graph({})
    nodes["negative"] = {"class_type": "LoadImage", "inputs": {"image": "negative.png"}}
    nodes["reference"]["inputs"].update(negative_images=["negative", 0], negative_masks=["negative", 1])
    assert server.run(nodes)["status"]["status_str"] == "success"


def test_reference_batch_errors_name_the_input(server, pictures):
    nodes = graph({})
    nodes["single"] = {"class_type": "LoadImage", "inputs": {"image": "ref_a.png"}}
    nodes["reference"]["inputs"]["mask"] = ["single", 1]
    expect_error(server, nodes, "mask: 1 mask(s) for 2 reference image(s)")
    expect_error(server, graph({}, refs="ref_pair_empty.png"), "mask: the reference mask is empty", "reference image 2 of 2")
    nodes = graph({})  # the negative mask is the subject itself, on the same photo
    nodes["negative"] = {"class_type": "LoadImage", "inputs": {"image": "ref_a.png"}}
    nodes["reference"]["inputs"].update(image=["negative", 0], mask=["negative", 1],
                                        negative_images=["negative", 0], negative_masks=["negative", 1])
    expect_error(server, nodes, "negative_masks: mask 1 covers", "reference image 1 (the same photo)")
    nodes = graph({})
    nodes["negative"] = {"class_type": "LoadImage", "inputs": {"image": "negative.png"}}
    nodes["reference"]["inputs"].update(negative_images=["negative", 0])
    expect_error(server, nodes, "negative_masks: negative images and negative masks go together")


def test_a_second_load_image_adds_references(server, pictures):
    """image_2 (+ mask_2) from a second Load Image: the same reference set as one batch of both pictures (the very
    same mask of the test photo); each mask input holds the masks of its own image input (a box line per image
    otherwise, image's lines first)."""
    batch = saved_mask(server, server.run(graph({})))
    nodes = graph({}, refs="ref_a.png")
    nodes["second"] = {"class_type": "LoadImage", "inputs": {"image": "ref_b.png"}}
    nodes["reference"]["inputs"].update(image_2=["second", 0], mask_2=["second", 1])
    assert np.array_equal(saved_mask(server, server.run(nodes)), batch)
    nodes["refs"]["inputs"]["image"] = "ref_pair.png"  # two images on image, but one mask on mask
    nodes["reference"]["inputs"]["mask"] = ["second", 1]
    expect_error(server, nodes, "mask: 1 mask(s) for 2 image(s) of image")


def test_a_list_of_references_of_different_sizes(server, pictures):
    """Documented behaviour: a list of images of different sizes is a reference set, the i-th mask for the
    i-th image; masks in another order are an error naming the mask and both sizes."""
    nodes = graph({})
    nodes["list"] = {"class_type": "TestImageList", "inputs": {"masks": "matching"}}
    nodes["reference"]["inputs"].update(image=["list", 0], mask=["list", 1])
    assert server.run(nodes)["status"]["status_str"] == "success"
    nodes["list"]["inputs"]["masks"] = "swapped"
    expect_error(server, nodes, "mask: the mask of reference image 1 of 2 (160x128) differs from the image's size (128x128)")


def test_another_packs_sam_model_drives_persam_segment(server, pictures):
    """The SAM_MODEL gives the very masks of the pack's own loader on the same weights."""
    ours = saved_mask(server, server.run(graph({})))
    theirs = saved_mask(server, server.run(graph({}, sam="sam")))
    assert ours.max() == 255 and np.array_equal(ours, theirs)
    expect_error(server, graph({}, sam="sam_hq"), "sam_model: got a SAM-HQ model", "ViT-B / ViT-L / ViT-H")
    expect_error(server, graph({}, sam="sam2"), "sam_model: got a SAM 2 model")
    nodes = graph({}, sam="sam")
    nodes["sam"] = {"class_type": "PersamSamLoader", "inputs": {"checkpoint": "tiny_sam.pth"}}
    nodes["reference"]["inputs"]["sam"] = ["sam", 0]
    expect_error(server, nodes, "sam: connect either sam", "not both")
