"""Hostile weight files through the real server: bad files written under new names into the server's model
folders. Each refusal names the file and the real reason, nothing pickled runs, the good checkpoint then
loads, and no file outside the output folder changes. (Checkpoints with extra top-level entries or without the fixed
``pos_embed.pos_embed`` buffer: in-process, test_weight_files.py.)"""

import pytest
import torch
from bad_weights import Payload, write_bad
from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from file_guard import assert_unchanged, snapshot
from graphs import diception_graph, persam_graph, reference_png
from safetensors.torch import load_file, save_file

SAM = FIXTURES / "persam"
DICE = FIXTURES / "diception" / "model"


def _sam_state():
    return load_file(str(SAM / "tiny_sam.safetensors"))


def _dice():
    return torch.load(DICE / "diception_tiny.pth", weights_only=True)


def _marker(models):
    return models / "payload_ran"


def sam_file(models, name, kind):
    """Write one bad SAM file (and a config beside it where the case needs one) → its name."""
    path = models / "sams" / name
    if kind == "config strings":
        save_file(_sam_state(), str(path))
        (models / "sams" / (path.stem + "_config.json")).write_text('{"decoder_num_heads": "two"}')
    elif kind == "pickled object":
        torch.save({"image_encoder.x": torch.zeros(1), "y": Payload(_marker(models))}, path)
    else:
        write_bad(path, kind)
    return name


def dice_file(models, name, kind):
    path = models / "diception" / name
    if kind == "missing learned tensor":
        ckpt = _dice()
        ckpt["transformer"].pop("transformer_blocks.0.attn.to_q.weight")
        torch.save(ckpt, path)
    else:
        write_bad(path, kind)
    return name


# One case per loader contract through the server: the loader node finds the file in ComfyUI's model folder and its
# refusal names the file and the real reason; nothing pickled runs; a SAM's config is read from beside it. Every kind
# of bad file is classified once, in-process (test_weight_files.py: models/weights.py, load_sam, apply_checkpoint).
SAM_CASES = {  # kind: fragments of the error
    "lfs": ("Git LFS pointer",),
    "pickled object": ("not a weights-only checkpoint", "refused"),
    "config strings": ("_config.json", "decoder_num_heads must be a positive integer", "'two'"),
}
SUFFIX = {"config strings": ".safetensors"}

DICE_CASES = {
    "truncated safetensors": ("truncated safetensors file",),
    "missing learned tensor": ("transformer_blocks.0.attn.to_q.weight",),
}
DICE_SUFFIX = {"truncated safetensors": ".safetensors"}


@pytest.fixture(scope="module")
def server(comfy):
    save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    reference_png(comfy, "hostile_ref.png")
    comfy.run(persam_graph("hostile_ref.png", batch=1))
    comfy.run(diception_graph("rect.png", prefix="hostile_w"))  # warms the prompt cache
    return comfy


def expect_refusal(server, bad, good, fragments, name):
    before = snapshot(server)
    with pytest.raises(ComfyError) as e:
        server.run(bad, timeout=120)
    text = error_message(e.value.body) if "status" in (e.value.body or {}) else str(e.value.body)
    missing = [f for f in (name,) + tuple(fragments) if f not in text]
    assert not missing, f"the error lacks {missing}: {text[:600]}"
    assert server.run(good, timeout=300)["status"]["status_str"] == "success"
    assert_unchanged(before, snapshot(server))


@pytest.mark.parametrize("kind", list(SAM_CASES))
def test_bad_sam_files(server, kind):
    models = server.dirs["models"]
    name = sam_file(models, f"hostile_{kind.replace(' ', '_')}{SUFFIX.get(kind, '.pth')}", kind)
    good = diception_graph("rect.png", prefix=f"hostile_next_{kind.replace(' ', '_')}")  # quick; PerSAM: see below
    expect_refusal(server, persam_graph("hostile_ref.png", batch=1, sam=name), good, SAM_CASES[kind], name)
    assert not _marker(models).exists(), "a pickled payload ran"


@pytest.mark.parametrize("kind", list(DICE_CASES))
def test_bad_diception_files(server, kind):
    name = dice_file(server.dirs["models"], f"hostile_{kind.replace(' ', '_')}{DICE_SUFFIX.get(kind, '.pth')}", kind)
    bad = diception_graph("rect.png", prefix="hostile_w")
    bad["model"]["inputs"]["checkpoint"] = name
    expect_refusal(server, bad, diception_graph("rect.png", prefix="hostile_w"), DICE_CASES[kind], name)


def test_a_broken_base_folder_names_what_it_lacks(server):
    folder = server.dirs["models"] / "diception" / "broken_sd3"
    folder.mkdir(exist_ok=True)
    (folder / "model_index.json").write_text("{}")
    bad = diception_graph("rect.png", prefix="hostile_w")
    bad["model"]["inputs"]["base_model"] = "broken_sd3"
    expect_refusal(server, bad, diception_graph("rect.png", prefix="hostile_w"), ("missing ['transformer'",), "broken_sd3")


def test_the_good_sam_loads_after_all_of_it(server):
    before = snapshot(server)
    assert server.run(persam_graph("hostile_ref.png", batch=1), timeout=300)["status"]["status_str"] == "success"
    assert_unchanged(before, snapshot(server))
