"""The shipped workflows: API twins run headless through scripts/queue_workflow.py on the tiny models;
UI-format graphs use only known nodes, valid links and in-range widget values, and match their twins."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from graphs import TINY
from PIL import Image

from scripts.make_workflows import ui_path

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(p.stem for p in (ROOT / "workflows" / "api").glob("*.json"))


def test_there_is_a_workflow_for_every_use():
    assert set(NAMES) == {
        "diception_depth", "diception_normals", "diception_point_segmentation", "diception_entity_semantic_masks",
        "persam_segment", "persam_to_diception", "persam_dreambooth_dataset", "persam_several_references", "diception_new_task",
    }
    assert all(ui_path(n).is_file() for n in NAMES)


def test_persam_example_pictures_are_the_synthetic_photos_with_their_exact_masks():
    """The PerSAM templates' pictures are the synthetic-PerSeg photos scripts/make_example_set.py says (the miniature
    SAM's world; PerSAM 2's: scenes of the miniature DICEPTION's world), each painted mask (alpha 0, as Load Image
    reads masks) exactly the subject's or the look-alike's, and PerSAM 4's box line 2 is the box of the subject in
    its second reference (line 1 empty: reference 1 has its mask)."""
    from scripts import make_example_set as examples

    for name, (_, _, _, alpha) in examples.PERSAM_PICTURES.items():
        photo = examples.persam_photo(name)
        picture = np.asarray(Image.open(ROOT / "workflows" / "images" / name))
        assert np.array_equal(picture[..., :3], photo.image), name
        if alpha is None:
            assert picture.shape[2] == 3, name
        else:
            assert np.array_equal(picture[..., 3] == 0, photo.mask if alpha == "subject" else photo.distractor), name
    api = json.loads((ROOT / "workflows" / "api" / "persam_several_references.json").read_text())
    reference = next(node for node in api.values() if node["class_type"] == "PersamReference")
    assert reference["inputs"]["box"].split("\n") == ["", examples.second_reference_box()]
    assert api[reference["inputs"]["image_2"][0]]["inputs"]["image"] == "example_reference_2.png"
    # PerSAM 2 works in the miniature DICEPTION's world: its reference is a scene of it with the box's exact mask
    scene, mask = examples.persam_2_reference()
    picture = np.asarray(Image.open(ROOT / "workflows" / "images" / "example_scene_reference.png"))
    assert np.array_equal(picture[..., :3], scene.rgb) and np.array_equal(picture[..., 3] == 0, mask)
    scene_photo = np.asarray(Image.open(ROOT / "workflows" / "images" / "example_scene.png"))
    assert np.array_equal(scene_photo, examples.diception_scene().rgb)


def depth_outputs_are_all_downloaded(written):
    """Every output file the history lists is downloaded, Save Depth's float32 .npy included."""
    scene = Image.open(ROOT / "workflows" / "images" / "example_scene.png")
    arrays = [np.load(p) for p in written if p.suffix == ".npy"]
    assert len(arrays) == 1 and arrays[0].dtype == np.float32 and arrays[0].shape == scene.size[::-1]
    depth_png = next(p for p in written if p.name.startswith("diception_") and "_depth" not in p.name and p.suffix == ".png")
    assert np.asarray(Image.open(depth_png)).dtype == np.uint16 or Image.open(depth_png).mode.startswith("I")
    assert {p.name.split("_0")[0] for p in written} >= {"diception_depth", "diception_depth_preview", "diception"}


def the_typed_points_were_used(written):
    assert [p for p in written if p.name.startswith("diception_point_mask_")], written


# --set beyond the tiny models, and what each run's downloads must show (queue_workflow.py's contract, checked on the
# workflows' own runs): a JSON list for the STRING points widget arrives as its text.
SETS = {"diception_point_segmentation": ['DiceptionPerceiveTask.points=[{"x":5,"y":5}]']}
CHECKS = {"diception_depth": depth_outputs_are_all_downloaded, "diception_point_segmentation": the_typed_points_were_used}


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs_headless(comfy, name, tmp_path):
    images = [str(p) for p in (ROOT / "workflows" / "images").glob("*.png")]
    port = comfy.url.rsplit(":", 1)[1]
    cmd = [sys.executable, str(ROOT / "scripts" / "queue_workflow.py"), str(ROOT / "workflows" / "api" / f"{name}.json"),
           "--port", port, "--out", str(tmp_path / "out")] + [a for i in images for a in ("--image", i)]
    cmd += [a for s in TINY + SETS.get(name, []) for a in ("--set", s)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    written = [Path(line) for line in done.stdout.split()]
    assert all(p.is_file() for p in written) and (list((tmp_path / "out").glob("*.png")) or name == "persam_dreambooth_dataset")
    CHECKS.get(name, lambda _: None)(written)


def test_the_queue_client_fails_with_the_servers_message(comfy, tmp_path):
    port = comfy.url.rsplit(":", 1)[1]
    cmd = [sys.executable, str(ROOT / "scripts" / "queue_workflow.py"), str(ROOT / "workflows" / "api" / "diception_depth.json"),
           "--port", port, "--set", "DiceptionLoad.checkpoint=missing.pth"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "missing.pth" in done.stderr


def widget_inputs(info):
    for group in ("required", "optional"):
        for name, spec in info["input"].get(group, {}).items():
            kind, options = spec[0], spec[1] if len(spec) > 1 else {}
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                yield name, kind, options


def check_value(node_type, name, kind, options, value):
    where = f"{node_type}.{name}"
    if isinstance(kind, list):
        assert value in kind or node_type in ("LoadImage", "DiceptionLoad", "PersamSamLoader"), f"{where}: {value!r} not in choices"
    elif kind in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)), f"{where}: {value!r} is not a number"
        assert options.get("min", -float("inf")) <= value <= options.get("max", float("inf")), f"{where}: {value} out of range"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    else:
        assert isinstance(value, str), where


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_valid_and_matches_its_api_twin(comfy, name):
    info = comfy.object_info()
    ui = json.loads(ui_path(name).read_text())
    api = json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert {str(i) for i in nodes} == set(api)
    for link_id, source, slot, target, index, kind in ui["links"]:
        assert link_id in nodes[source]["outputs"][slot]["links"]
        assert nodes[target]["inputs"][index]["link"] == link_id
        assert nodes[source]["outputs"][slot]["type"] == kind
        assert api[str(target)]["inputs"][nodes[target]["inputs"][index]["name"]] == [str(source), slot]
    for node in ui["nodes"]:
        assert node["type"] in info, f"unknown node type {node['type']}"
        values = iter(node["widgets_values"])
        for widget, kind, options in widget_inputs(info[node["type"]]):
            value = next(values)
            if kind == "INT" and widget in ("seed", "noise_seed"):
                assert next(values) in ("fixed", "increment", "decrement", "randomize")
            if options.get("image_upload"):
                next(values)
            expected = api[str(node["id"])]["inputs"].get(widget)
            if isinstance(expected, list):
                continue  # driven by a link
            check_value(node["type"], widget, kind, options, value)
            assert value == expected, f"{name}: {node['type']}.{widget} is {value!r} in the UI graph, {expected!r} in the API twin"
