"""PerSAM on batches through the real ComfyUI server: each frame's own points reach Perceive Task, and every
instance comes out as its own mask with its image and image index.

STRING outputs are read back by linking them into SaveImage's ``filename_prefix`` (the server then names the
saved file after the string): the test sees exactly what the node emitted, through the server.
"""

import io
import json

import numpy as np
from comfy_server import FIXTURES
from graphs import load_diception, perceive, reference_png
from PIL import Image

PERSAM = FIXTURES / "persam" / "data"


def frames_graph(comfy, names, **segment_inputs):
    """LoadImage per frame → ImageBatch chain → PerSAM Segment (reference from the fixture)."""
    graph = {
        "ref_image": {"class_type": "LoadImage", "inputs": {"image": reference_png(comfy)}},
        "sam": {"class_type": "PersamSamLoader", "inputs": {"checkpoint": "tiny_sam.pth"}},
        "reference": {"class_type": "PersamReference", "inputs": {
            "sam": ["sam", 0], "image": ["ref_image", 0], "mask": ["ref_image", 1], "fine_tune": False, "box": ""}},
    }
    link = None
    for i, name in enumerate(names):
        graph[f"frame{i}"] = {"class_type": "LoadImage", "inputs": {"image": name}}
        if link is None:
            link = [f"frame{i}", 0]
        else:
            graph[f"batch{i}"] = {"class_type": "ImageBatch", "inputs": {"image1": link, "image2": [f"frame{i}", 0]}}
            link = [f"batch{i}", 0]
    graph["segment"] = {"class_type": "PersamSegment", "inputs": {"reference": ["reference", 0], "images": link, **segment_inputs}}
    return graph, link


def save(images, prefix):
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}


def string_output(entry, node):
    """The string a node received as filename_prefix (SaveImage names files '<prefix>_00001_.png')."""
    return entry["outputs"][node]["images"][0]["filename"].rsplit("_", 2)[0]


def pictures(comfy, entry, node):
    return [np.asarray(Image.open(io.BytesIO(comfy.view(image)))) for image in entry["outputs"][node]["images"]]


def shifted_frames(comfy, count):
    """The test photo shifted 20 px further right in every frame (the subject moves, and its points)."""
    photo = np.asarray(Image.open(PERSAM / "test1.png").convert("RGB"))
    names = []
    for k in range(count):
        names.append(f"shifted_{k}.png")
        Image.fromarray(np.roll(photo, 20 * k, axis=1)).save(comfy.dirs["input"] / names[-1])
    return names


def test_each_frame_uses_its_own_points_in_perceive_task(comfy):
    graph, frames = frames_graph(comfy, shifted_frames(comfy, 4), batch_size=3)  # chunks of 3 + 1
    graph["model"] = load_diception()
    graph["perceive"] = perceive(frames, "point segmentation", points=["segment", 1], batch_size=3)
    graph["save_answers"] = save(["perceive", 0], "frames_answer")
    graph["save_points"] = save(frames, ["segment", 1])
    entry = comfy.run(graph)
    points = json.loads(string_output(entry, "save_points"))
    assert len(points) == 4 and all(len(p) == 1 for p in points)
    assert len({(p[0]["x"], p[0]["y"]) for p in points}) >= 3, points  # the subject moved: the points did too
    chained = np.stack(pictures(comfy, entry, "save_answers")).astype(np.int16)

    def answers(points_text, prefix):
        alone = {k: v for k, v in graph.items() if not k.startswith("save") and k not in ("segment", "perceive")}
        alone["perceive"] = perceive(frames, "point segmentation", points=points_text, batch_size=1)
        alone["save"] = save(["perceive", 0], prefix)
        return np.stack(pictures(comfy, comfy.run(alone), "save")).astype(np.int16)

    # the same per-frame points typed in (one image per call) give the same answers; that each image's answer follows
    # its own points is the engine's rule, tested in-process (test_diception_batches.py)
    assert np.abs(answers(json.dumps(points), "typed") - chained).max() <= 1


def test_several_instances_come_out_one_mask_each_with_its_image_index(comfy):
    names = ["multi_a.png", "multi_b.png"]
    for name, source in zip(names, ("test1.png", "test2.png")):
        Image.open(PERSAM / source).convert("RGB").save(comfy.dirs["input"] / name)
    graph, frames = frames_graph(comfy, names, max_instances=3, overlap_stop=1.0)
    graph["union"] = {"class_type": "MaskToImage", "inputs": {"mask": ["segment", 0]}}
    graph["instances"] = {"class_type": "MaskToImage", "inputs": {"mask": ["segment", 3]}}
    graph.update(save_union=save(["union", 0], "union"), save_instances=save(["instances", 0], "instance"),
                 save_instance_images=save(["segment", 4], "instance_image"), save_index=save(["segment", 4], ["segment", 5]))
    entry = comfy.run(graph)
    index = json.loads(string_output(entry, "save_index"))
    unions = [u[..., 0] > 127 for u in pictures(comfy, entry, "save_union")]
    instances = [m[..., 0] > 127 for m in pictures(comfy, entry, "save_instances")]
    images = pictures(comfy, entry, "save_instance_images")
    originals = [np.asarray(Image.open(PERSAM / s).convert("RGB")) for s in ("test1.png", "test2.png")]
    assert len(instances) == len(images) == len(index) >= 3 and index == sorted(index) and set(index) == {0, 1}, index
    for mask, image, i in zip(instances, images, index):
        assert mask.any() and not (mask & ~unions[i]).any()  # each instance lies in its image's union mask
        assert np.array_equal(image, originals[i])  # and comes with its own image
    for i, union in enumerate(unions):
        assert np.array_equal(np.any([m for m, j in zip(instances, index) if j == i], axis=0), union)
