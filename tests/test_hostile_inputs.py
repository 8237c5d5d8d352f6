"""Hostile input through the real server (issue 12): bad points, numbers, images, masks and API values.

Every case queues a bad prompt and asserts (a) the error names the input and what was expected, (b) the
same prompt with a good value then succeeds, (c) no file outside the output folder appeared or changed
(file_guard). Weight files: test_hostile_weights.py; interrupts: test_hostile_interrupt.py.
"""

import copy
import json
import urllib.error
import urllib.request

import pytest
from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from file_guard import assert_unchanged, differences, snapshot
from graphs import diception_graph
from graphs import persam_graph, reference_png

NAN, INF = float("nan"), float("inf")
POINT = '[{"x": 20, "y": 30}]'


# --- graphs: each case is (graph builder, node, input, bad value, good value, expected fragments) ------------


def dice(**inputs):
    graph = diception_graph("rect.png", prefix="hostile_dice")
    graph["perceive"]["inputs"].update(inputs)
    return graph


def points(value):
    return dice(task="point segmentation", points=value)


def nan_image(width=96, height=72, value=NAN):
    """A NaN IMAGE from core nodes: SolidMask accepts NaN (2024-03 checks only min/max), MaskToImage passes it on."""
    return {
        "solid": {"class_type": "SolidMask", "inputs": {"value": value, "width": width, "height": height}},
        "nan_image": {"class_type": "MaskToImage", "inputs": {"mask": ["solid", 0]}},
    }


def persam(**segment):
    graph = persam_graph("hostile_ref.png", batch=1)
    graph["segment"]["inputs"].update(segment)
    return graph


def persam_ref(**reference):
    graph = persam_graph("hostile_ref.png", batch=1)
    graph["reference"]["inputs"].update(reference)
    return graph


def decoder(class_type, save_slot=0, **inputs):
    graph = {
        "load": {"class_type": "LoadImage", "inputs": {"image": "rect.png"}},
        "decode": {"class_type": class_type, "inputs": {"image": ["load", 0], **inputs}},
    }
    if class_type == "DiceptionRGBToMasks":
        graph["as_image"] = {"class_type": "MaskToImage", "inputs": {"mask": ["decode", 0]}}
        graph["save"] = {"class_type": "SaveImage", "inputs": {"images": ["as_image", 0], "filename_prefix": "hostile_dec"}}
    else:
        graph["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", save_slot], "filename_prefix": "hostile_dec"}}
    return graph


DEPTH = dict(output="disparity (near = bright)", normalization="minmax", invert=False, colormap="Spectral")
MASKS = dict(mode="threshold (point / semantic)", threshold=0.5, tolerance=12.0, min_area=64)


def with_nan(graph, node, name, width=96, height=72, as_mask=False):
    graph.update(nan_image(width, height))
    graph[node]["inputs"][name] = ["solid", 0] if as_mask else ["nan_image", 0]
    return graph


def dreambooth(**changes):
    graph = persam_graph("hostile_ref.png", batch=1)
    graph["db_mask"] = {"class_type": "PersamDreamBoothMask", "inputs": {
        "reference": ["reference", 0], "images": ["batch", 0], "grow_pixels": 4, "feather_pixels": 0,
        "fill_holes": True, "vae_factor": 8}}
    graph["db_mask"]["inputs"].update(changes)
    graph["db_preview"] = {"class_type": "SaveImage", "inputs": {"images": ["db_mask", 2], "filename_prefix": "hostile_db"}}
    for other in ("save_masks", "save_preview", "mask_image"):  # one output only: the 2024-03 engine runs the valid
        graph.pop(other)  # outputs of a prompt and drops the invalid ones silently (200 with node_errors)
    return graph


def save_depth(depth_link, graph):
    graph["save_depth"] = {"class_type": "DiceptionSaveDepth", "inputs": {
        "depth": depth_link, "filename_prefix": "hostile/depth", "format": "png16"}}
    graph.pop("save", None)
    return graph


def dataset(**changes):
    graph = {
        "load": {"class_type": "LoadImage", "inputs": {"image": "rect.png"}},
        "solid": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 96, "height": 72}},
        "db_save": {"class_type": "PersamSaveDreamBoothDataset", "inputs": {
            "images": ["load", 0], "masks": ["solid", 0], "folder": "hostile/db", "caption": "a photo of sks",
            "onetrainer_masklabels": True}},
    }
    graph["db_save"]["inputs"].update(changes)
    return graph


# (bad graph, good graph, fragments the error must contain). PerSAM-based cases give None: the SAM of the test
# fixtures encodes at 1024 px, so their "next good prompt" is a quick decoder graph that really executes, and
# test_persam_nodes_work_after_all_of_it runs the full good PerSAM graphs once at the end.
CASES = {}


def case(name, bad, good, *fragments):
    assert name not in CASES, name
    CASES[name] = (bad, good, fragments)


# points: Perceive Task's KJNodes JSON
GOOD_POINTS = points(POINT)
case("points: bools", points('[{"x": true, "y": false}]'), GOOD_POINTS, "points[0].x", "expected a number of pixels", "True")
case("points: 10**400", points('[{"x": 1' + "0" * 400 + ', "y": 2}]'), GOOD_POINTS, "points[0].x", "expected a pixel coordinate")
case("points: 1e400", points('[{"x": 1e400, "y": 2}]'), GOOD_POINTS, "points[0].x", "expected a finite number", "inf")
case("points: NaN", points('[{"x": 3, "y": NaN}]'), GOOD_POINTS, "points[0].y", "expected a finite number", "nan")
case("points: -Infinity", points("[[-Infinity, 3]]"), GOOD_POINTS, "points[0].x", "expected a finite number")
case("points: numeric strings", points('[{"x": "3", "y": "4"}]'), GOOD_POINTS, "points[0].x", "expected a number of pixels", "str")
case("points: null coordinate", points('[{"x": null, "y": 4}]'), GOOD_POINTS, "points[0].x", "expected a number")
case("points: missing y", points('[{"x": 3}]'), GOOD_POINTS, "points[0]", 'expected {"x": number, "y": number}')
case("points: a triple", points("[[1, 2, 3]]"), GOOD_POINTS, "points[0]", 'expected {"x": number, "y": number}')
case("points: nested 100000 deep", points("[" * 100000 + "]" * 100000), GOOD_POINTS, "points:", "expected")
case("points: 100000 points", points("[" + ",".join(["[1, 1]"] * 100000) + "]"), GOOD_POINTS, "points:", "at most 5 points")
case("points: a bare number", points("5"), GOOD_POINTS, "points:", "expected a JSON list")
case("points: JSON null", points("null"), GOOD_POINTS, "points:", "expected a JSON list")
case("points: negative", points('[{"x": -3, "y": 4}]'), GOOD_POINTS, "points[0]", "outside the 96x72 image", "x must be in [0, 95]")
case("points: API number", points(12), GOOD_POINTS, "points:", "expected a JSON list")
case("points: API object", points({"x": 1, "y": 2}), GOOD_POINTS, "points:", "not valid JSON")
case("points: broken JSON", points('[{"x": 1,'), GOOD_POINTS, "points:", "not valid JSON")

# numbers and choices, required and optional
GOOD_DICE = dice()
case("guidance NaN", dice(guidance=NAN), GOOD_DICE, "guidance", "expected a finite number in [0.0, 20.0]", "nan")
case("guidance 'nan' text", dice(guidance="nan"), GOOD_DICE, "guidance", "finite number in [0.0, 20.0]")
case("guidance Infinity", dice(guidance=INF), GOOD_DICE, "guidance", "20.0")
case("resolution 400 > tiny model", dice(resolution=400), GOOD_DICE, "resolution", "384 at most", "pos_embed_max_size 24")
case("resolution 2048 > tiny model", dice(resolution=2048), GOOD_DICE, "resolution", "384 at most")
case("seed -1", dice(seed=-1), GOOD_DICE, "seed", "min of 0")
case("point_order 'zz'", dice(point_order="zz"), GOOD_DICE, "point_order", "expected one of ['yx (training data)', 'xy (official inference.py)']", "'zz'")
case("point_order 3", dice(point_order=3), GOOD_DICE, "point_order", "expected one of", "got 3")
case("point_order null", dice(point_order=None), GOOD_DICE, "point_order", "expected one of", "None")

for label, value in (("10**9", 10**9), ("0", 0), ("-5", -5), ("true", True), ("2.5", 2.5), ("'100'", "100"), ("null", None)):
    case(f"iterations {label}", persam_ref(fine_tune=True, iterations=value), None, "iterations", "expected an integer in [1, 10000]")
case("fine_tune 'yes'", persam_ref(fine_tune="yes"), None, "fine_tune", "expected true or false", "'yes'")
case("fine_tune 1", persam_ref(fine_tune=1), None, "fine_tune", "expected true or false", "(int)")
case("box is a number", persam_ref(box=123), None, "box", "expected a string", "123")
GOOD_BOX = persam_ref(box="40, 30, 200, 180") | {"ref_image": {"class_type": "LoadImage", "inputs": {"image": "hostile_empty.png"}}}
for label, box in (("NaN", "nan, nan, 50, 50"), ("1e400", "1e400, 0, 50, 50"), ("text", "left, top, right, bottom")):
    case(f"box {label}", dict(GOOD_BOX, reference=dict(GOOD_BOX["reference"], inputs=dict(GOOD_BOX["reference"]["inputs"], box=box))),
         None, "box:", "x0")

for label, value in (("0", 0), ("-3", -3), ("17", 17), ("true", True), ("an object", {"a": 1})):
    case(f"max_instances {label}", persam(max_instances=value), None, "max_instances", "expected an integer in [1, 16]")
for label, value in (("NaN", NAN), ("1.5", 1.5), ("-0.1", -0.1), ("'half'", "half"), ("Infinity", INF)):
    case(f"overlap_stop {label}", persam(overlap_stop=value), None, "overlap_stop", "in [0.0, 1.0]")

GOOD_DEPTH = decoder("DiceptionRGBToDepth", **DEPTH)
case("align_in 'bogus'", decoder("DiceptionRGBToDepth", **DEPTH, align_in="bogus"), GOOD_DEPTH, "align_in", "expected one of ['disparity', 'depth']")
case("invert 'false' text", decoder("DiceptionRGBToDepth", **dict(DEPTH, invert="false")), GOOD_DEPTH, "invert", "expected true or false")
case("colormap unknown", decoder("DiceptionRGBToDepth", **dict(DEPTH, colormap="rainbow")), GOOD_DEPTH, "colormap")
GOOD_MASKS = decoder("DiceptionRGBToMasks", **MASKS)
case("threshold NaN", decoder("DiceptionRGBToMasks", **dict(MASKS, threshold=NAN)), GOOD_MASKS, "threshold", "finite number in [0.0, 1.0]")
case("tolerance Infinity", decoder("DiceptionRGBToMasks", **dict(MASKS, tolerance=INF)), GOOD_MASKS, "tolerance", "100.0")
case("min_area 0", decoder("DiceptionRGBToMasks", **dict(MASKS, min_area=0)), GOOD_MASKS, "min_area", "min of 1")
case("fill_holes 0", dreambooth(fill_holes=0), None, "fill_holes", "expected true or false")
case("vae_factor 0", dreambooth(vae_factor=0), None, "vae_factor", "min of 1")
case("grow_pixels 10**9", dreambooth(grow_pixels=10**9), None, "grow_pixels", "max of 256")
case("onetrainer_masklabels 'no'", dataset(onetrainer_masklabels="no"), dataset(), "onetrainer_masklabels", "expected true or false")

# images and masks with NaN pixels (they would silently turn black)
case("Perceive Task image NaN", with_nan(dice(), "perceive", "image"), GOOD_DICE, "image:", "non-finite", "expected finite pixel values")
case("PerSAM Reference image NaN", with_nan(persam_ref(), "reference", "image", 320, 240), None, "image:", "non-finite")
case("PerSAM Reference mask NaN", with_nan(persam_ref(), "reference", "mask", 320, 240, as_mask=True), None, "mask:", "MASK", "non-finite")
case("PerSAM Segment images NaN", with_nan(persam(), "segment", "images", 320, 240), None, "images:", "non-finite")
case("DreamBooth Mask images NaN", with_nan(dreambooth(), "db_mask", "images", 320, 240), None, "images:", "non-finite")
case("RGB-to-Depth image NaN", with_nan(decoder("DiceptionRGBToDepth", **DEPTH), "decode", "image"), GOOD_DEPTH, "image:", "non-finite")
case("RGB-to-Depth reference_depth NaN", with_nan(decoder("DiceptionRGBToDepth", **DEPTH), "decode", "reference_depth", as_mask=True), GOOD_DEPTH, "reference_depth:", "non-finite")
case("RGB-to-Normal image NaN", with_nan(decoder("DiceptionRGBToNormal", convention="OpenGL (as decoded)"), "decode", "image"),
     decoder("DiceptionRGBToNormal", convention="OpenGL (as decoded)"), "image:", "non-finite")
case("RGB-to-Masks image NaN", with_nan(decoder("DiceptionRGBToMasks", **MASKS), "decode", "image"), GOOD_MASKS, "image:", "non-finite")
case("Save Depth depth NaN", save_depth(["solid", 0], nan_image()), save_depth(["solid", 0], nan_image(value=0.5)), "depth:", "non-finite")
case("Save DreamBooth Dataset masks NaN", dataset(masks=["nan", 0]) | {"nan": nan_image()["solid"]}, dataset(), "masks:", "non-finite")
case("PerSAM Reference mask of another size", persam_ref(mask=["small", 0]) | {"small": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}},
     None, "mask:", "differs from the image")


# ComfyUI v0.8.0+ converts a widget value to its declared type itself (``int(v)``, ``float(v)``, ``bool(v)``,
# ``str(v)`` in execution.validate_inputs) before any node runs: 2.5 reaches the node as 2, ``"false"`` and
# ``"yes"`` as True, 0 as False, 123 as "123". The pack never sees the original value there, so on those builds
# these cases only have to leave the server serving and every file untouched (the 2024-03 build passes them on
# unconverted, and the pack refuses them with its own message).
CONVERTED_BY_CURRENT_COMFYUI = {
    "iterations true", "iterations 2.5", "iterations '100'", "fine_tune 'yes'", "fine_tune 1", "box is a number",
    "max_instances true", "invert 'false' text", "fill_holes 0", "onetrainer_masklabels 'no'",
}


def refused_by_comfyui_validation(error: ComfyError, input_name: str) -> bool:
    """A 400 from ComfyUI's own validation (v0.8.0+ checks optional inputs too) whose node errors name the
    input and say what was expected (below min / above max / not in the list / not convertible)."""
    for node in ((error.body or {}).get("node_errors") or {}).values():
        for item in node.get("errors", []):
            if item.get("extra_info", {}).get("input_name") == input_name and item.get("type") in (
                "value_smaller_than_min", "value_bigger_than_max", "value_not_in_list", "invalid_input_type",
            ):
                return True
    return False


def error_text(error: ComfyError) -> str:
    """The server's words: the execution error, or a 400's node errors (message, details, input name)."""
    body = error.body or {}
    if "status" in body:
        return error_message(body)
    return json.dumps(body)


@pytest.fixture(scope="module")
def server(comfy):
    save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    reference_png(comfy, "hostile_ref.png")
    reference_png(comfy, "hostile_empty.png", empty=True)
    for good in (GOOD_DICE, GOOD_POINTS):  # warm the prompt cache, so later good prompts write nothing
        comfy.run(copy.deepcopy(good))
    return comfy


RESULTS_BY_BUILD = {}  # per ComfyUI build: the counts for the note


def results(server) -> dict:
    return RESULTS_BY_BUILD.setdefault(server.build.label, dict.fromkeys(("cases", "clear errors", "server still serving", "files outside output"), 0))


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_value(server, name):
    bad, good, fragments = CASES[name]
    before = snapshot(server)
    RESULTS = results(server)
    RESULTS["cases"] += 1
    current = server.build.at_least(0, 8, 0)
    if current and name in CONVERTED_BY_CURRENT_COMFYUI:
        try:  # ComfyUI converted the value to a valid one (or the pack refused what it became): either is fine
            server.run(copy.deepcopy(bad), timeout=120)
        except ComfyError:
            pass
    else:
        with pytest.raises(ComfyError) as e:
            server.run(copy.deepcopy(bad), timeout=120)
        text = error_text(e.value)
        missing = [f for f in fragments if f not in text]
        if current and missing and refused_by_comfyui_validation(e.value, fragments[0].rstrip(":")):
            missing = []  # ComfyUI v0.8.0+'s own check came first, in its words, naming the input and the bound
        assert not missing, f"{name}: the error lacks {missing}: {text[:600]}"
        RESULTS["clear errors"] += 1
    if good is None:
        good = decoder("DiceptionRGBToDepth", **DEPTH)
        good["save"]["inputs"]["filename_prefix"] = f"hostile_next_{RESULTS['cases']}"  # a new prefix: it runs
    assert server.run(copy.deepcopy(good), timeout=300)["status"]["status_str"] == "success"
    RESULTS["server still serving"] += 1
    after = snapshot(server)
    RESULTS["files outside output"] += sum(len(v) for v in differences(before, after).values())
    assert_unchanged(before, after)


# --- API bodies: the HTTP layer (ComfyUI's own) must answer and keep serving ------------------------------------

BODIES = {
    "not JSON": b"{prompt: nope",
    "a JSON list": b"[1, 2, 3]",
    "prompt is text": b'{"prompt": "DiceptionPerceiveTask"}',
    "node without inputs": b'{"prompt": {"1": {"class_type": "DiceptionPerceiveTask"}}}',
    "inputs is a list": b'{"prompt": {"1": {"class_type": "DiceptionSaveDepth", "inputs": [1, 2]}}}',
    "unknown class": b'{"prompt": {"1": {"class_type": "DiceptionEverything", "inputs": {}}}}',
    "5 MB of points": json.dumps({"prompt": points("[" + " " * 5_000_000 + "]")}).encode(),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_hostile_api_body(server, name):
    before = snapshot(server)
    request = urllib.request.Request(server.url + "/prompt", data=BODIES[name], headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            answer = json.loads(reply.read())
        entry = server.wait(answer["prompt_id"], timeout=120)  # accepted: it must then fail or succeed, not hang
        assert entry["status"]["status_str"] in ("error", "success")
    except urllib.error.HTTPError as e:
        assert 400 <= e.code < 600
    assert server.run(copy.deepcopy(GOOD_DICE) | {"save": {"class_type": "SaveImage", "inputs": {
        "images": ["perceive", 0], "filename_prefix": "after_body"}}})["status"]["status_str"] == "success"
    assert_unchanged(before, snapshot(server))


def test_persam_nodes_work_after_all_of_it(server):
    before = snapshot(server)
    for good in (persam_ref(fine_tune=True, iterations=20, box="10, 10, 50, 50"), dreambooth()):
        assert server.run(copy.deepcopy(good), timeout=300)["status"]["status_str"] == "success"
    assert_unchanged(before, snapshot(server))


def test_hostile_suite_counts(server):
    """The counts for the issue's note (when the whole module ran)."""
    RESULTS = results(server)
    print(f"\nhostile suite on {server.build.label}:", RESULTS)
    assert len(CASES) + len(BODIES) >= 60
    if RESULTS["cases"] == len(CASES):
        converted = len(CONVERTED_BY_CURRENT_COMFYUI) if server.build.at_least(0, 8, 0) else 0
        assert RESULTS["clear errors"] == len(CASES) - converted, RESULTS
        assert RESULTS["server still serving"] == len(CASES), RESULTS
