"""The template browser of current ComfyUI (v0.8.0 server, frontend 1.58.1) lists the pack's workflows by title.

What the frontend reads for a custom-node template (its own code, GraphView/useRunButtonTelemetry chunks): the
names from ``GET /api/workflow_templates`` (``{pack folder: [file names]}``) as card title and, with "-" and "_"
as spaces, as description; the picture from ``/api/workflow_templates/<pack>/<name>.jpg``; the graph from
``<name>.json``; the "alphabetical" order compares titles with numbers in numeric order."""

import io
import json
import re
import urllib.parse
import urllib.request

from comfy_server import require_version
from PIL import Image

from scripts.make_workflows import TITLES
from scripts.local_comfyui import PACK_NAME


def fetch(comfy, path):
    with urllib.request.urlopen(comfy.url + path, timeout=30) as answer:
        return answer.status, answer.headers.get("Content-Type", ""), answer.read()


def test_each_template_is_listed_by_title_with_its_picture(comfy):
    require_version(comfy, 0, 8, 0, why="ComfyUI 2024-03 serves no custom-node workflow templates")
    status, _, body = fetch(comfy, "/api/workflow_templates")
    listed = json.loads(body)[PACK_NAME]
    assert status == 200 and sorted(listed) == sorted(TITLES.values())
    for title in listed:
        base = f"/api/workflow_templates/{PACK_NAME}/{urllib.parse.quote(title)}"
        status, kind, picture = fetch(comfy, base + ".jpg")
        assert status == 200 and kind == "image/jpeg", (title, status, kind)
        with Image.open(io.BytesIO(picture)) as image:
            image.load()
            assert image.format == "JPEG" and image.size == (512, 512)
        status, _, graph = fetch(comfy, base + ".json")
        assert status == 200 and json.loads(graph)["nodes"]


def natural(title):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", title)]


def test_titles_sort_in_the_intended_order_and_read_as_descriptions():
    titles = list(TITLES.values())
    assert sorted(titles, key=natural) == titles
    for title in titles:
        assert re.fullmatch(r"(DICEPTION|PerSAM) \d [A-Z][^(]+ \([^)]+\)", title), title
        assert not set(title) & set('-_:?#%/\\<>|*"'), f"{title!r}: the browser shows '-' and '_' as spaces; the rest break URLs or file names"


def test_templates_use_no_deprecated_node_and_name_their_model_downloads(comfy):
    """Issue 19: PerSAM 1 and 3 used core ImageBatch, deprecated in ComfyUI v0.8.0 (its BatchImagesNode is not in the
    2024-03 build, so the templates batch nothing); the Missing Models panel of frontend 1.58.1 reads download links
    from the workflow's ``models`` and the loader node's ``properties.models`` ({name, url, directory})."""
    from scripts.make_workflows import MODEL_FILES, ui_path

    info = comfy.object_info()
    for name in TITLES:
        workflow = json.loads(ui_path(name).read_text())
        for node in workflow["nodes"]:
            assert node["type"] in info, (name, node["type"])
            assert not info[node["type"]].get("deprecated"), f"{name}: {node['type']} is deprecated in {comfy.build.label}"
            files = [v for v in node["widgets_values"] if isinstance(v, str) and v.endswith((".pth", ".safetensors"))]
            assert sorted(m["name"] for m in node["properties"].get("models", [])) == sorted(files), (name, node["type"])
        for model in workflow["models"]:
            assert model == {"name": model["name"], **MODEL_FILES[model["name"]]}
            file = model["name"].rsplit("/", 1)[-1]  # checkpoints/sd3_medium.safetensors: a file of models/checkpoints
            assert re.fullmatch(r"https://[^ ]+/" + re.escape(file), model["url"])
            assert model["directory"] in ("diception", "sams", "checkpoints", "text_encoders")
        if any(n["type"] == "DiceptionLoad" for n in workflow["nodes"]):  # SD3-medium and its encoders are listed too
            assert {"checkpoints/sd3_medium.safetensors", "clip_l.safetensors", "clip_g.safetensors",
                    "t5xxl_fp16.safetensors", "DICEPTION_v1.pth"} <= {m["name"] for m in workflow["models"]}, name
