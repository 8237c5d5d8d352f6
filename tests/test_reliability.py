"""Malformed prompts and inputs through the real server: each gives a clear error (a 400 naming the node, or an
execution error naming the input), and the server keeps serving."""

import copy

import pytest
from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from graphs import diception_graph
from graphs import persam_graph, reference_png


def dice(**changes):
    graph = diception_graph("rect.png")
    for path, value in changes.items():
        node, _, name = path.partition("__")
        if value is DELETE:
            graph[node]["inputs"].pop(name)
        else:
            graph[node]["inputs"][name] = value
    return graph


DELETE = object()

REFUSED = {  # rejected by /prompt validation (HTTP 400), the error names the node
    "steps is text": (dice(perceive__steps="many"), "perceive"),
    "steps below 1": (dice(perceive__steps=0), "perceive"),
    "absurd resolution": (dice(perceive__resolution=100000), "perceive"),
    "guidance is a list": (dice(perceive__guidance=[1, 2, 3]), "perceive"),
    "unknown task": (dice(perceive__task="image2everything"), "perceive"),
    "unknown category": (dice(perceive__category="unicorn"), "perceive"),
    "missing model link": (dice(perceive__model=DELETE), "perceive"),
    "link to a missing node": (dice(perceive__model=["nope", 0]), None),
    "missing checkpoint file": (dice(model__checkpoint="missing.pth"), "model"),
    "unknown dtype": (dice(model__dtype="fp8"), "model"),
    "missing image file": (dice(load__image="does_not_exist.png"), "load"),
}

FAILING = {  # accepted, then fail while executing with a message that names the problem
    "points are broken JSON": (dice(perceive__task="point segmentation", perceive__points='[{"x": 1,'), "not valid JSON"),
    "points are not numbers": (dice(perceive__task="point segmentation", perceive__points='[{"x": "left", "y": 2}]'), "points[0]"),
    "too many points": (dice(perceive__task="point segmentation", perceive__points='[[1,1],[2,2],[3,3],[4,4],[5,5],[6,6]]'), "at most 5"),
    "point outside": (dice(perceive__task="point segmentation", perceive__points='[{"x": 5, "y": 900}]'), "outside"),
    "no points for segmentation": (dice(perceive__task="point segmentation"), "needs 1 to 5 points"),
    "semantic without category": (dice(perceive__task="semantic segmentation"), "needs a COCO category"),
    "resolution not a multiple of 16": (dice(perceive__resolution=200), "multiple of 16"),
    "more point lists than images": (
        dice(perceive__task="point segmentation", perceive__points='[[{"x": 1, "y": 1}], [{"x": 2, "y": 2}]]'),
        "2 point lists for a batch of 1 images",
    ),
}


@pytest.fixture(autouse=True)
def inputs(comfy):
    save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")


@pytest.mark.parametrize("case", list(REFUSED))
def test_malformed_prompts_are_refused_clearly(comfy, case):
    graph, node = REFUSED[case]
    with pytest.raises(ComfyError) as e:
        comfy.queue(copy.deepcopy(graph))
    body = e.value.body
    assert body.get("error"), body
    if node:
        assert node in body["node_errors"], body
        assert body["node_errors"][node]["errors"][0]["message"]


@pytest.mark.parametrize("case", list(FAILING))
def test_bad_inputs_fail_with_a_clear_message(comfy, case):
    graph, message = FAILING[case]
    with pytest.raises(ComfyError) as e:
        comfy.run(copy.deepcopy(graph))
    assert message in error_message(e.value.body)


def test_persam_bad_box_and_missing_mask(comfy):
    name = reference_png(comfy, "empty_for_box.png", empty=True)
    graph = persam_graph(name, batch=1)
    graph["reference"]["inputs"]["box"] = "10, 10, 5"
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    assert "box: expected 'x0, y0, x1, y1'" in error_message(e.value.body)
    graph["reference"]["inputs"]["box"] = "40, 30, 200, 180"  # a box instead of a mask works
    assert comfy.run(graph)["status"]["status_str"] == "success"


def test_the_server_still_serves_after_all_of_it(comfy):
    assert len(REFUSED) + len(FAILING) >= 19
    assert comfy.run(diception_graph("rect.png", prefix="still_serving"))["status"]["status_str"] == "success"
