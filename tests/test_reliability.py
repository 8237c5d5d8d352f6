"""Malformed prompts through the real server: ComfyUI's own /prompt validation of the pack's declared inputs refuses
each with a 400 naming the node, and the server keeps serving. Bad values that reach the pack's nodes:
test_hostile_inputs.py (through the server) and the engine's own tests (in-process)."""

import copy

import pytest
from comfy_server import FIXTURES, ComfyError, save_fixture_image
from graphs import diception_graph


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


def test_the_server_still_serves_after_all_of_it(comfy):
    assert comfy.run(diception_graph("rect.png", prefix="still_serving"))["status"]["status_str"] == "success"
