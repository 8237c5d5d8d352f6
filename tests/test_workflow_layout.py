"""The shipped graph-editor workflows are laid out readably: no two node boxes overlap (the title bar, 30 px
above ``pos``, included) in either canvas mode: the classic canvas, where nodes that show a picture (Load Image,
Save Image) or the point picker (Perceive Task) need room below their slots and widgets, and Nodes 2.0, whose
nodes are taller (heights measured in Chromium, NODES2_HEIGHTS; tests/test_browser_current_frontend.py checks
them against the real page). Each template is named by its title and has a picture; none uses a node the current
ComfyUI marks deprecated (tests/test_templates.py asks the servers)."""

import itertools
import json
from pathlib import Path

import pytest
from PIL import Image

from scripts.make_workflows import NODES2_HEIGHTS, TITLES, nodes2_guess, ui_path

ROOT = Path(__file__).resolve().parent.parent
UI = sorted((ROOT / "workflows").glob("*.json"))
TITLE = 30
PICTURE_ROOM = {"LoadImage": 250, "SaveImage": 250, "DiceptionPerceiveTask": 220}


def needed_height(node):
    """What the graph editor draws at least: slot rows and widgets (20 px each), plus the picture's room."""
    rows = max(len(node["inputs"]), len(node["outputs"]))
    return rows * 20 + len(node["widgets_values"]) * 20 + PICTURE_ROOM.get(node["type"], 0)


def box(node, mode="classic"):
    """The drawn box: the saved size, grown to the content as the editor does, and the title bar above; in Nodes 2.0
    the node's measured height (title bar included) when that is more."""
    (x, y), (w, h) = node["pos"], node["size"]
    bottom = y + max(h, needed_height(node))
    if mode == "nodes2":
        bottom = max(bottom, y - TITLE + (NODES2_HEIGHTS.get(node["type"]) or nodes2_guess(node)))
    return x, y - TITLE, x + w, bottom


def overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_every_template_is_named_by_its_title_and_has_a_picture():
    assert {p.stem for p in UI} == set(TITLES.values())
    for name in TITLES:
        picture = ui_path(name).with_suffix(".jpg")
        assert picture.is_file(), f"no thumbnail {picture.name}"
        with Image.open(picture) as image:
            assert image.format == "JPEG" and min(image.size) >= 256


@pytest.mark.parametrize("mode", ["classic", "nodes2"])
@pytest.mark.parametrize("path", UI, ids=[p.stem.split(" (")[0] for p in UI])
def test_no_two_nodes_overlap(path, mode):
    nodes = json.loads(path.read_text())["nodes"]
    for a, b in itertools.combinations(nodes, 2):
        assert not overlap(box(a, mode), box(b, mode)), f"{mode} {path.name}: {a['type']} #{a['id']} {box(a, mode)} overlaps {b['type']} #{b['id']} {box(b, mode)}"


@pytest.mark.parametrize("path", UI, ids=[p.stem.split(" (")[0] for p in UI])
def test_sizes_fit_the_content(path):
    for node in json.loads(path.read_text())["nodes"]:
        assert node["size"][1] >= needed_height(node), f"{path.name}: {node['type']} #{node['id']} is {node['size']}, needs {needed_height(node)} px"
