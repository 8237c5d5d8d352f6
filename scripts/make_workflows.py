"""Write the example workflows: API format (``workflows/api/NAME.json``) and the graph editor's UI format
(``workflows/NAME.json``), from one definition each. Widget order comes from a live ``/object_info``
(a test-engine ComfyUI is started for it).

    python scripts/make_workflows.py
"""

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.decoders import EDGE_TOLERANCE, MERGE_TOLERANCE  # noqa: E402
from models.known_files import KNOWN_FILES, model_list_entry  # noqa: E402
from scripts.make_example_set import diception_category, diception_point, second_reference_box  # noqa: E402
from scripts.local_comfyui import LocalComfyUI  # noqa: E402

# SD3-medium as ComfyUI's single file with its separate text encoders (what ComfyUI's own SD3 templates use): files
# the Missing Models panel lists, shared with ComfyUI's loaders (MODEL_FILES below)
SD3_FILES = {"base_model": "checkpoints/sd3_medium.safetensors", "clip_l": "clip_l.safetensors",
             "clip_g": "clip_g.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}
DICE = {"class_type": "DiceptionLoad", "inputs": {**SD3_FILES, "checkpoint": "DICEPTION_v1.pth", "dtype": "auto"}}
SAM = {"class_type": "PersamSamLoader", "inputs": {"checkpoint": "sam_vit_h_4b8939.pth"}}


def load(name, title=None):
    node = {"class_type": "LoadImage", "inputs": {"image": name}}
    return {**node, "_meta": {"title": title}} if title else node


def perceive(image, task, steps=1, guidance=1.0, points="[]", category="none"):
    return {"class_type": "DiceptionPerceiveTask", "inputs": {
        "model": ["2", 0], "image": image, "task": task, "category": category, "points": points, "steps": steps,
        "guidance": guidance, "seed": 0, "resolution": 768}}


def save(images, prefix):
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}


def masks(image, mode, threshold=0.5, photo=None):
    inputs = {"image": image, "mode": mode, "threshold": threshold, "tolerance": 12.0, "min_area": 64,
              "merge_tolerance": MERGE_TOLERANCE, "edge_tolerance": EDGE_TOLERANCE}
    return {"class_type": "DiceptionRGBToMasks", "inputs": {**inputs, "photo": photo} if photo else inputs}


def persam_reference(fine_tune=False):
    return {"class_type": "PersamReference", "inputs": {"sam": ["3", 0], "image": ["1", 0], "mask": ["1", 1], "fine_tune": fine_tune, "box": "", "iterations": 1000}}


WORKFLOWS = {
    "diception_depth": {
        "1": load("example_scene.png"), "2": DICE, "3": perceive(["1", 0], "depth"),
        "4": {"class_type": "DiceptionRGBToDepth", "inputs": {"image": ["3", 0], "output": "disparity (near = bright)", "normalization": "minmax", "invert": False, "colormap": "Spectral"}},
        "5": save(["4", 0], "diception_depth"), "6": save(["4", 2], "diception_depth_preview"),
        "7": {"class_type": "DiceptionSaveDepth", "inputs": {"depth": ["4", 1], "filename_prefix": "depth/diception", "format": "png16+npy"}},
    },
    "diception_normals": {
        "1": load("example_scene.png"), "2": DICE, "3": perceive(["1", 0], "normal"),
        "4": {"class_type": "DiceptionRGBToNormal", "inputs": {"image": ["3", 0], "convention": "OpenGL (as decoded)"}},
        "5": save(["4", 0], "diception_normals"),
    },
    "diception_point_segmentation": {
        "1": load("example_scene.png"), "2": DICE,
        "3": perceive(["1", 0], "point segmentation", steps=28, guidance=2.0, points=json.dumps([dict(zip("xy", diception_point()))])),
        "4": masks(["3", 0], "threshold (point / semantic)"),
        "5": {"class_type": "MaskToImage", "inputs": {"mask": ["4", 0]}}, "6": save(["5", 0], "diception_point_mask"),
    },
    "diception_entity_semantic_masks": {
        "1": load("example_scene.png"), "2": DICE, "3": perceive(["1", 0], "entity segmentation", steps=28, guidance=2.0),
        "4": masks(["3", 0], "instances (entity / semantic colours)", photo=["1", 0]),
        "5": {"class_type": "MaskToImage", "inputs": {"mask": ["4", 0]}}, "6": save(["5", 0], "diception_entity_masks"),
        "7": perceive(["1", 0], "semantic segmentation", steps=28, guidance=2.0, category=diception_category()),
        "8": masks(["7", 0], "threshold (point / semantic)"),
        "9": {"class_type": "MaskToImage", "inputs": {"mask": ["8", 0]}}, "10": save(["9", 0], "diception_semantic_dog"),
    },
    "diception_new_task": {
        "1": load("example_red_scene.png"), "2": DICE,
        "3": {"class_type": "DiceptionLoadExamples", "inputs": {"folder": "diception_examples/red_objects"}},
        "4": {"class_type": "DiceptionTrainAdapter", "inputs": {
            "model": ["2", 0], "examples": ["3", 0], "task_name": "red objects", "prompt": "[[image2red_objects]]", "steps": 300,
            "batch_size": 1, "resolution": 768, "seed": 0, "gradient_checkpointing": True}},  # rank, rate, target: the node's
        "5": {"class_type": "DiceptionSaveAdapter", "inputs": {"adapter": ["4", 1], "name": "red_objects"}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["4", 2]}},
        "7": dict(perceive(["1", 0], "depth"), inputs={**perceive(["1", 0], "depth")["inputs"], "model": ["4", 0], "task_name": "red objects"}),
        "8": save(["7", 0], "diception_red_objects"),
    },
    "persam_segment": {
        "1": load("example_reference.png"), "2": load("example_photo.png"), "3": SAM, "4": persam_reference(),
        "6": {"class_type": "PersamSegment", "inputs": {"reference": ["4", 0], "images": ["2", 0], "max_instances": 1, "overlap_stop": 0.5}},
        "7": {"class_type": "MaskToImage", "inputs": {"mask": ["6", 0]}}, "8": save(["7", 0], "persam_mask"),
        "9": save(["6", 2], "persam_preview"),
    },
    "persam_to_diception": {
        "1": load("example_scene_reference.png"), "2": DICE, "3": SAM, "4": persam_reference(),
        "5": load("example_scene.png"),
        "6": {"class_type": "PersamSegment", "inputs": {"reference": ["4", 0], "images": ["5", 0], "max_instances": 1, "overlap_stop": 0.5}},
        "7": perceive(["5", 0], "point segmentation", steps=28, guidance=2.0, points=["6", 1]),
        "8": masks(["7", 0], "threshold (point / semantic)"),
        "9": {"class_type": "MaskToImage", "inputs": {"mask": ["8", 0]}}, "10": save(["9", 0], "persam_diception_mask"),
    },
    "persam_dreambooth_dataset": {
        "1": load("example_reference.png"), "2": load("example_photo.png"), "3": SAM, "4": persam_reference(fine_tune=True),
        "6": {"class_type": "PersamDreamBoothMask", "inputs": {"reference": ["4", 0], "images": ["2", 0], "grow_pixels": 4, "feather_pixels": 2, "fill_holes": True, "vae_factor": 8}},
        "5": load("example_class.png"),  # a class image: another toy (or a folder of them: class_folder)
        "7": {"class_type": "PersamSaveDreamBoothDataset", "inputs": {"images": ["2", 0], "masks": ["6", 0], "folder": "dreambooth/subject", "caption": "a photo of sks toy", "onetrainer_masklabels": True,
                                                                   "repeats": 10, "class_images": ["5", 0], "class_folder": "", "class_prompt": "a photo of toy", "prior_loss_weight": 1.0}},
        "8": save(["6", 2], "dreambooth_preview"),
    },
    "persam_several_references": {  # two looks of the subject: reference 1 with its mask, reference 2 by its box
        "1": load("example_reference.png", "Reference 1: masked (box line 1 empty)"),
        "2": load("example_reference_2.png", "Reference 2: no mask (box line 2)"),
        "6": load("example_second_look.png", "Photo to segment"),
        "3": load("example_negative.png", "Negative: the look-alike masked"), "4": SAM,
        "5": {"class_type": "PersamReference", "_meta": {"title": "PerSAM Reference (box line n: ref n)"}, "inputs": {
            "sam": ["4", 0], "image": ["1", 0], "mask": ["1", 1], "image_2": ["2", 0], "fine_tune": False,
            "box": "\n" + second_reference_box(), "iterations": 1000, "negative_images": ["3", 0], "negative_masks": ["3", 1]}},
        "7": {"class_type": "PersamSegment", "inputs": {"reference": ["5", 0], "images": ["6", 0], "max_instances": 1, "overlap_stop": 0.5}},
        "8": {"class_type": "MaskToImage", "inputs": {"mask": ["7", 0]}}, "9": save(["8", 0], "persam_refs_mask"),
        "10": save(["7", 2], "persam_refs_preview"),
    },
}

# Template titles: current ComfyUI's template browser (frontend 1.58.1) shows a pack's workflow by its FILE NAME,
# as card title and (with "-" and "_" as spaces) as description, and sorts titles alphabetically with numbers
# in numeric order; the picture is the ``.jpg`` of the same name (scripts/make_thumbnails.py). So the UI-format
# files are named "<system> <n> <title> (<what it does>)"; the API twins keep the short names.
TITLES = {
    "diception_depth": "DICEPTION 1 Depth in one step (ControlNet depth image, colour preview, 16 bit PNG and npy)",
    "diception_normals": "DICEPTION 2 Surface normals in one step (unit normals as colours, OpenGL convention)",
    "diception_point_segmentation": "DICEPTION 3 Point segmentation (click points on the image, get the mask)",
    "diception_entity_semantic_masks": "DICEPTION 4 Entity and semantic masks (one mask per instance, all objects of a class)",
    "diception_new_task": "DICEPTION 5 Teach a new task from examples (train an adapter on image and answer pairs, save it, run it)",
    "persam_segment": "PerSAM 1 One shot segmentation (reference image and mask, masks of new photos)",
    "persam_to_diception": "PerSAM 2 PerSAM points drive DICEPTION (personalised point segmentation)",
    "persam_dreambooth_dataset": "PerSAM 3 DreamBooth dataset (subject masks for kohya, OneTrainer, SimpleTuner)",
    "persam_several_references": "PerSAM 4 Several references and a negative (reference batch, masks or boxes, look alike to avoid)",
}


# Every model file a template needs, with its download link, in the graph editor's format: a node's
# ``properties.models`` and the workflow's ``models`` ({"name", "url", "directory"}, plus "hash"/"hash_type" where the
# sha256 is pinned), which the Missing Models panel of current ComfyUI (frontend 1.58.1: missingModelScan /
# missingModelMetadata) reads for a missing file chosen in a widget; ``name`` must equal the widget's value. The panel
# scans only widget values that are file names, so the templates name SD3-medium as ComfyUI's single file
# (checkpoints/sd3_medium.safetensors) with its three text encoders, not as a diffusers folder. Its Download button
# takes only Hugging Face and Civitai links (SAM's Meta link gets "Copy URL") and cannot pass a licence gate: the
# loaders' own ``download`` fetches every one of them (models/weights_download.py, docs/weights.md).
MODEL_FILES = {
    value: model_list_entry(KNOWN_FILES[value.rsplit("/", 1)[-1]], name=value)
    for value in list(SD3_FILES.values()) + [DICE["inputs"]["checkpoint"], SAM["inputs"]["checkpoint"]]
}


def ui_path(name: str) -> Path:
    """The graph-editor workflow of the API workflow ``name`` (a template of the template browser)."""
    return ROOT / "workflows" / f"{TITLES.get(name, name)}.json"


WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
# Node boxes as the graph editor draws them. Classic canvas (LiteGraph): the title bar (30 px) sits ABOVE ``pos``;
# each slot row is 20 px, each widget about 24 px; image previews (Load Image, Save Image) and the point picker
# need room below, as does the line where Save DICEPTION Adapter shows what it wrote. ``size`` is saved for this mode.
TITLE_HEIGHT, SLOT_HEIGHT, WIDGET_HEIGHT, GAP = 30, 20, 24, 40
NODE_WIDTH = 330
ROOM_BELOW = {"LoadImage": 280, "SaveImage": 260, "PreviewImage": 260, "DiceptionPerceiveTask": 240, "DiceptionSaveAdapter": 40}
# "Nodes 2.0" (frontend 1.58.1, setting Comfy.VueNodes.Enabled) draws each node as a component sized by its content,
# title bar included, whatever ``size`` says: taller than the classic box. Heights measured in Chromium at zoom 1
# (tests/test_browser_current_frontend.py measures every template node again and fails when one outgrows this
# table, printing the new figures). A node not measured yet is given NODES2_GUESS, a generous estimate.
NODES2_HEIGHTS = {
    "LoadImage": 408, "SaveImage": 344, "PreviewImage": 344, "MaskToImage": 64,
    "DiceptionLoad": 308, "DiceptionPerceiveTask": 680, "DiceptionRGBToDepth": 288, "DiceptionRGBToNormal": 116,
    "DiceptionRGBToMasks": 276, "DiceptionSaveDepth": 152,
    "PersamSamLoader": 168, "PersamReference": 352, "PersamSegment": 300, "PersamDreamBoothMask": 240,
    "PersamSaveDreamBoothDataset": 464,  # not measured since issue 29 added 4 widgets and an input: nodes2_guess
    "DiceptionLoadExamples": 144, "DiceptionTrainAdapter": 500, "DiceptionSaveAdapter": 172,
}
# The template browser fits a template to the window (3/4 of it, frontend 1.58.1), and the classic canvas draws no
# text below about 0.6 zoom: in a 1280×800 window a template of FIT_COLUMNS columns and STACK_HEIGHT px opens at
# 0.6 or more. Short neighbouring columns are stacked into one until FIT_COLUMNS remain (while the stack stays within
# STACK_HEIGHT); more than MAX_COLUMNS columns side by side (PerSAM 2's seven opened at 45 %) continue in a second
# band below. A template that still does not fit opens at 0.6 on its top-left corner (web/template_view.js).
FIT_COLUMNS, STACK_HEIGHT = 4, 960
MAX_COLUMNS = 5


def node_size(node: dict) -> list:
    """[width, height] for a UI node on the classic canvas: its slot rows, its widgets and, where it shows a
    picture, room for it."""
    widgets = len(node["widgets_values"])
    rows = max(len(node["inputs"]), len(node["outputs"]))
    return [NODE_WIDTH, 10 + rows * SLOT_HEIGHT + widgets * WIDGET_HEIGHT + ROOM_BELOW.get(node["type"], 0)]


def nodes2_guess(node: dict) -> int:
    rows = max(len(node["inputs"]), len(node["outputs"]))
    return 48 + 32 * rows + 40 * len(node["widgets_values"]) + ROOM_BELOW.get(node["type"], 0)


def drawn_heights(node: dict) -> dict:
    """The height the node takes, title bar included, in each canvas mode ({"classic": …, "nodes2": …})."""
    classic = node["size"][1] + TITLE_HEIGHT
    return {"classic": classic, "nodes2": max(classic, NODES2_HEIGHTS.get(node["type"]) or nodes2_guess(node))}


def stack_height(nodes: list) -> int:
    """Height of nodes stacked in one column, in the canvas mode that draws them tallest."""
    return sum(max(drawn_heights(node).values()) + GAP for node in nodes) - GAP


def lay_out(nodes: list, column) -> None:
    """Columns (``column(node)``), nodes stacked in each column: no two boxes (title bar included) overlap in either
    canvas mode. Beyond FIT_COLUMNS the shortest pair of neighbouring columns is stacked into one while it stays
    within STACK_HEIGHT; beyond MAX_COLUMNS the columns continue in a second band below the first."""
    columns = {}
    for node in nodes:
        node["size"] = node_size(node)
        columns.setdefault(column(node), []).append(node)
    stacks = [columns[depth] for depth in sorted(columns)]
    while len(stacks) > FIT_COLUMNS:
        height, i = min((stack_height(stacks[i] + stacks[i + 1]), i) for i in range(len(stacks) - 1))
        if height > STACK_HEIGHT:
            break
        stacks[i:i + 2] = [stacks[i] + stacks[i + 1]]
    one_band, two_bands = len(stacks), -(-len(stacks) // 2)
    if len(stacks) > MAX_COLUMNS:
        place(stacks, two_bands)
        return
    place(stacks, two_bands)
    two_bands_fit = classic_fit(nodes)
    place(stacks, one_band)
    if classic_fit(nodes) < two_bands_fit:  # wide and short: two bands open larger
        place(stacks, two_bands)


def place(stacks: list, per_band: int) -> None:
    top = 60
    for start in range(0, len(stacks), per_band):
        x, bottom = 60, top
        for stack in stacks[start:start + per_band]:
            y = top
            for node in stack:
                node["pos"] = [x, y]
                y += max(drawn_heights(node).values()) + GAP
            bottom = max(bottom, y)
            x += max(n["size"][0] for n in stack) + GAP + 20
        top = bottom + GAP


def classic_fit(nodes: list) -> float:
    """The zoom at which the template browser opens the template in a 1280×800 window on the classic canvas: 3/4 of
    the canvas (1264×786 px measured in Chromium) over the bounds of the node boxes, title bars included."""
    left, top = min(n["pos"][0] for n in nodes), min(n["pos"][1] - TITLE_HEIGHT for n in nodes)
    right, bottom = max(n["pos"][0] + n["size"][0] for n in nodes), max(n["pos"][1] + n["size"][1] for n in nodes)
    return 0.75 * min(1264 / (right - left), 786 / (bottom - top))


def input_specs(info: dict):
    """[(name, type, options)] in the node's declared order (required, then optional)."""
    specs = []
    for group in ("required", "optional"):
        for name, spec in info["input"].get(group, {}).items():
            specs.append((name, spec[0], spec[1] if len(spec) > 1 else {}))
    return specs


def is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def has_seed_control(name, kind, options) -> bool:
    return kind == "INT" and (name in ("seed", "noise_seed") or options.get("control_after_generate"))


def complete(api: dict, object_info: dict) -> dict:
    """Every widget input written out (defaults for those not given), as the graph editor's export has them."""
    for spec in api.values():
        for name, kind, options in input_specs(object_info[spec["class_type"]]):
            if is_widget(kind) and name not in spec["inputs"] and "default" in options:
                spec["inputs"][name] = options["default"]
    return api


def to_ui(api: dict, object_info: dict) -> dict:
    """API format → the graph editor's format (nodes, links, widgets_values in widget order)."""
    ids = {key: int(key) for key in api}
    depth = {}

    def level(key):
        if key not in depth:
            parents = [v[0] for v in api[key]["inputs"].values() if isinstance(v, list)]
            depth[key] = 1 + max((level(p) for p in parents), default=-1)
        return depth[key]

    nodes, links = {}, []
    for key in sorted(api, key=lambda k: (level(k), ids[k])):
        spec = api[key]
        info = object_info[spec["class_type"]]
        node = {"id": ids[key], "type": spec["class_type"], "pos": [0, 0],
                "size": [NODE_WIDTH, 0], "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [],
                "properties": {"Node name for S&R": spec["class_type"]}, "widgets_values": []}
        if spec.get("_meta", {}).get("title"):  # the node's title, as ComfyUI's API export writes it (_meta.title)
            node["title"] = spec["_meta"]["title"]
        for name, kind, options in input_specs(info):
            value = spec["inputs"].get(name)
            if is_widget(kind):
                if isinstance(value, list):  # a widget driven by a link: shown as an input
                    node["inputs"].append({"name": name, "type": kind if isinstance(kind, str) else "COMBO", "link": None, "widget": {"name": name}})
                    value = options.get("default", "")
                node["widgets_values"].append(value if value is not None else options.get("default"))
                if has_seed_control(name, kind, options):
                    node["widgets_values"].append("fixed")
                if options.get("image_upload"):
                    node["widgets_values"].append("image")
            elif value is not None or name in info["input"].get("required", {}):
                node["inputs"].append({"name": name, "type": kind, "link": None})
        node["outputs"] = [{"name": n, "type": t, "links": [], "slot_index": i}
                           for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))]
        nodes[key] = node
    for key, spec in api.items():
        for name, value in spec["inputs"].items():
            if not isinstance(value, list):
                continue
            source, slot = value
            link_id = len(links) + 1
            target = nodes[key]
            index = next(i for i, inp in enumerate(target["inputs"]) if inp["name"] == name)
            kind = nodes[source]["outputs"][slot]["type"]
            target["inputs"][index]["link"] = link_id
            nodes[source]["outputs"][slot]["links"].append(link_id)
            links.append([link_id, ids[source], slot, ids[key], index, kind])
    for order, key in enumerate(sorted(api, key=lambda k: (level(k), ids[k]))):
        nodes[key]["order"] = order
    consumers = {key: [k for k, spec in api.items() for v in spec["inputs"].values() if isinstance(v, list) and v[0] == key] for key in api}
    column = {}

    def latest(key):  # a source sits just left of its first consumer, not all sources in the first column
        if key not in column:
            column[key] = min((latest(c) - 1 for c in consumers[key]), default=level(key))
        return column[key]

    lay_out([nodes[key] for key in sorted(api, key=lambda k: (latest(k), level(k), ids[k]))], lambda node: latest(str(node["id"])))
    models = []
    for node in nodes.values():
        named = [{"name": v, **MODEL_FILES[v]} for v in node["widgets_values"] if isinstance(v, str) and v in MODEL_FILES]
        if named:
            node["properties"]["models"] = named
            models += [m for m in named if m not in models]
    return {"last_node_id": max(ids.values()), "last_link_id": len(links), "nodes": list(nodes.values()),
            "links": links, "groups": [], "config": {}, "extra": {}, "models": models, "version": 0.4}


def main():
    with tempfile.TemporaryDirectory() as work:
        engine = LocalComfyUI(work)
        try:
            object_info = engine.client.object_info()
        finally:
            engine.stop()
    (ROOT / "workflows" / "api").mkdir(parents=True, exist_ok=True)
    for name, api in WORKFLOWS.items():
        api = complete(api, object_info)
        (ROOT / "workflows" / "api" / f"{name}.json").write_text(json.dumps(api, indent=1) + "\n")
        ui_path(name).write_text(json.dumps(to_ui(api, object_info), indent=1) + "\n")
        print(name)


if __name__ == "__main__":
    main()
