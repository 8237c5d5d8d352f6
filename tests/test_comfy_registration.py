"""The pack registers in a real ComfyUI and runs a prompt (bad input through the server: test_hostile_inputs.py,
test_reliability.py); the engine never imports ComfyUI."""

import ast
import io
from pathlib import Path

from comfy_server import FIXTURES, pack_nodes, save_fixture_image
from graphs import diception_graph
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
COMFY_MODULES = {"comfy", "folder_paths", "server", "nodes", "execution", "comfy_extras", "comfy_api"}


def test_every_pack_node_is_in_object_info(comfy):
    info = comfy.object_info()
    expected = pack_nodes()
    assert len(expected) >= 2
    for name in expected:
        assert name in info, f"{name} missing from /object_info"
        node = info[name]
        assert node["input"]["required"], f"{name} has no inputs"
        assert len(node["output"]) == len(node["output_name"])
        assert node["output"] or node["output_node"], f"{name} has no outputs and is not an output node"
        assert node["category"].split("/")[0] in ("DICEPTION", "PerSAM")
        assert node["description"]
    assert "tiny_sd3" in info["DiceptionLoad"]["input"]["required"]["base_model"][0]
    assert "diception_tiny.pth" in info["DiceptionLoad"]["input"]["required"]["checkpoint"][0]
    assert "tiny_sam.pth" in info["PersamSamLoader"]["input"]["required"]["checkpoint"][0]


def test_sd3_single_files_in_checkpoints_are_offered_as_bases(comfy):
    (comfy.dirs["models"] / "checkpoints" / "sd3_medium_incl_clips.safetensors").write_bytes(b"")
    (comfy.dirs["models"] / "checkpoints" / "sdxl_base.safetensors").write_bytes(b"")
    bases = comfy.object_info()["DiceptionLoad"]["input"]["required"]["base_model"][0]
    assert "checkpoints/sd3_medium_incl_clips.safetensors" in bases and not any("sdxl" in b for b in bases)


def test_a_prompt_with_pack_nodes_succeeds(comfy):
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    entry = comfy.run(diception_graph(name, prefix="registration"))
    assert entry["status"]["status_str"] == "success"
    image = entry["outputs"]["save"]["images"][0]
    assert Image.open(io.BytesIO(comfy.view(image))).size == (96, 72)


def test_the_engine_never_imports_comfyui():
    for path in (ROOT / "models").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & COMFY_MODULES, f"{path.relative_to(ROOT)} imports {roots & COMFY_MODULES}"


def test_the_checkpoint_list_leaves_out_the_files_of_base_folders(comfy):
    checkpoints = comfy.object_info()["DiceptionLoad"]["input"]["required"]["checkpoint"][0]
    assert "diception_tiny.pth" in checkpoints and "diception_tiny.safetensors" in checkpoints
    assert not [c for c in checkpoints if c.replace("\\", "/").startswith("tiny_sd3/")], checkpoints
