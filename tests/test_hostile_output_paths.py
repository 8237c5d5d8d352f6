"""Hostile output names through the real server (issue 12, items 1 and 6): Save DreamBooth Dataset ``folder`` and
Save Depth ``filename_prefix``. Each case: the error names the input and what was expected, the next good prompt
succeeds, no file appears outside the output folder and no existing file or folder changes."""

import hashlib
import uuid

import numpy as np
import pytest
from comfy_server import ComfyError, error_message
from PIL import Image

# One refusal per writer input and kind of path through the server (the node passes the engine's refusal on, naming its
# input, and ComfyUI's output folder is the root); every naming rule is tested once, in-process, in test_output_paths.py.
FOLDER_CASES = {
    "climbs out": ("../hostile_up", "climbs out with '..'"),
    "link leading out": ("link_out/inside", "leads outside the output folder"),
}
PREFIX_CASES = {
    "absolute": ("/tmp/hostile_abs", "is an absolute path"),
    "link leading out": ("link_out/inside", "leads outside the output folder"),
    "ends in a folder": ("depth/", "ends in a folder"),
}


@pytest.fixture(scope="module")
def hostile(comfy, tmp_path_factory):
    """A small RGBA photo in the input folder, and output/link_out → a folder outside the output directory."""
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., :3] = 128
    rgba[..., 3] = 255
    rgba[8:20, 10:30, 3] = 0  # LoadImage's mask = 1 - alpha: the subject
    Image.fromarray(rgba, "RGBA").save(comfy.dirs["input"] / "hostile_photo.png")
    outside = tmp_path_factory.mktemp("outside_output")
    link = comfy.dirs["output"] / "link_out"
    if not link.is_symlink():
        link.symlink_to(outside, target_is_directory=True)
    return outside


def dataset_graph(folder):
    return {
        "load": {"class_type": "LoadImage", "inputs": {"image": "hostile_photo.png"}},
        "save": {"class_type": "PersamSaveDreamBoothDataset", "inputs": {
            "images": ["load", 0], "masks": ["load", 1], "folder": folder, "caption": "a photo of sks box",
            "onetrainer_masklabels": True}},
    }


def depth_graph(prefix):
    return {
        "load": {"class_type": "LoadImage", "inputs": {"image": "hostile_photo.png"}},
        "save": {"class_type": "DiceptionSaveDepth", "inputs": {"depth": ["load", 1], "filename_prefix": prefix, "format": "png16+npy"}},
    }


def snapshot(comfy, outside):
    """Hashes of every file (and the set of folders) under the server's folders (output, its siblings input and temp;
    not the server's log), and the folder the symbolic link points to."""
    state = {}
    base = comfy.dirs["output"].parent
    for path in sorted(base.rglob("*")):
        if path.name == "server.log":  # the test engine's own log
            continue
        if path.is_symlink():
            state[str(path)] = "link"
        elif path.is_file():
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            state[str(path)] = "dir"
    state.update({str(p): "outside" for p in outside.rglob("*")})
    return state


def refused_then_good(comfy, outside, graph, value, input_name, expected):
    before = snapshot(comfy, outside)
    with pytest.raises(ComfyError) as e:
        comfy.run(graph(value))
    message = error_message(e.value.body)
    assert f"{input_name}:" in message and expected in message, message
    assert snapshot(comfy, outside) == before  # nothing written, nothing changed, nothing outside
    good = comfy.run(graph(f"hostile_good/{uuid.uuid4().hex[:8]}"))  # the server still serves
    after = snapshot(comfy, outside)
    new = set(after) - set(before)
    assert new and all(p.startswith(str(comfy.dirs["output"] / "hostile_good")) for p in new), new
    assert all(after[p] == h for p, h in before.items())
    assert not list(outside.iterdir())
    return good


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_dreambooth_folder_is_refused_and_nothing_is_written(comfy, hostile, case):
    value, expected = FOLDER_CASES[case]
    refused_then_good(comfy, hostile, dataset_graph, value, "folder", expected)


@pytest.mark.parametrize("case", list(PREFIX_CASES))
def test_depth_filename_prefix_is_refused_and_nothing_is_written(comfy, hostile, case):
    value, expected = PREFIX_CASES[case]
    refused_then_good(comfy, hostile, depth_graph, value, "filename_prefix", expected)


def test_a_taken_folder_gets_a_numbered_sibling_inside_the_output_folder(comfy, hostile):
    name = f"hostile_taken/{uuid.uuid4().hex[:8]}"
    first = comfy.dirs["output"] / comfy.run(dataset_graph(name))["outputs"]["save"]["text"][0]
    before = snapshot(comfy, hostile)
    graph = dataset_graph(name)
    graph["save"]["inputs"]["caption"] = "another caption"  # not a cached result: the node runs again
    second = comfy.dirs["output"] / comfy.run(graph)["outputs"]["save"]["text"][0]
    assert second == first.with_name(first.name + "_001") and second.parent == first.parent
    after = snapshot(comfy, hostile)  # once: inside all() it hashed every file again for each file listed
    assert all(after[p] == h for p, h in before.items())
