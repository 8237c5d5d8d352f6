"""Hostile weight files through the real server: bad files written under new names into the server's model
folders. Each refusal names the file and the real reason, nothing pickled runs, the good checkpoint then
loads, and no file outside the output folder changes. A DICEPTION checkpoint with extra top-level entries,
or without only the fixed ``pos_embed.pos_embed`` buffer, loads and answers exactly as the original."""

import io
import pickle

import numpy as np
import pytest
import torch
from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from file_guard import assert_unchanged, snapshot
from graphs import diception_graph
from PIL import Image
from safetensors.torch import load_file, save_file
from graphs import persam_graph, reference_png
from bad_weights import Payload, write_bad

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
    state = _sam_state()
    if kind == "missing key":
        state.pop("image_encoder.neck.0.weight")
        save_file(state, str(path))
    elif kind == "string value":
        torch.save(dict(state, **{"mask_decoder.iou_token.weight": "oops"}), path)
    elif kind == "wrong shape":
        save_file(dict(state, **{"mask_decoder.iou_token.weight": torch.zeros(1, 7)}), str(path))
    elif kind in ("broken config", "config strings"):
        save_file(state, str(path))
        text = "{broken" if kind == "broken config" else '{"decoder_num_heads": "two"}'
        (models / "sams" / (path.stem + "_config.json")).write_text(text)
    elif kind == "pickled object":
        torch.save({"image_encoder.x": torch.zeros(1), "y": Payload(_marker(models))}, path)
    else:
        write_bad(path, kind)
    return name


def dice_file(models, name, kind):
    path = models / "diception" / name
    ckpt = _dice()
    if kind == "missing part":
        ckpt.pop("seg_embeddings")
    elif kind == "missing learned tensor":
        ckpt["transformer"].pop("transformer_blocks.0.attn.to_q.weight")
    elif kind == "missing point weight":
        ckpt["point_embedder"].pop("0.bias")
    elif kind == "string value":
        ckpt["not_seg_embeddings"] = {"weight": "oops"}
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps(ckpt))
        return name
    else:
        write_bad(path, kind)
        return name
    torch.save(ckpt, path)
    return name


SAM_CASES = {  # kind: fragments of the error
    "random": ("match neither safetensors nor a PyTorch checkpoint",),
    "safetensors": ("is a safetensors file despite its .pth suffix", "rename it"),
    "truncated torch": ("corrupt or truncated",),
    "empty": ("is empty (0 bytes)",),
    "html": ("HTML/XML page",),
    "lfs": ("Git LFS pointer",),
    "plain pickle": ("plain Python pickle", "was not unpickled"),
    "pickled object": ("not a weights-only checkpoint", "refused"),
    "other zip": ("zip archive but not a PyTorch checkpoint",),
    "missing key": ("incomplete Segment Anything checkpoint", "image_encoder.neck.0.weight"),
    "string value": ("entry 'mask_decoder.iou_token.weight' is a str", "expected a tensor"),
    "wrong shape": ("mask_decoder.iou_token.weight", "size mismatch"),
    "broken config": ("_config.json", "not valid JSON"),
    "config strings": ("_config.json", "decoder_num_heads must be a positive integer", "'two'"),
}
SUFFIX = {"missing key": ".safetensors", "wrong shape": ".safetensors", "broken config": ".safetensors", "config strings": ".safetensors"}

DICE_CASES = {
    "random": ("match neither safetensors nor a PyTorch checkpoint",),
    "truncated safetensors": ("truncated safetensors file",),
    "lfs": ("Git LFS pointer",),
    "plain pickle": ("plain Python pickle",),
    "missing part": ("not a DICEPTION checkpoint", "seg_embeddings"),
    "missing learned tensor": ("transformer_blocks.0.attn.to_q.weight",),
    "missing point weight": ("point encoder lacks", "0.bias"),
    "string value": ("entry 'not_seg_embeddings.weight' is a str",),
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


def test_the_good_sam_loads_after_all_of_it(server):
    before = snapshot(server)
    assert server.run(persam_graph("hostile_ref.png", batch=1), timeout=300)["status"]["status_str"] == "success"
    assert_unchanged(before, snapshot(server))


def _answer(server, checkpoint):
    graph = diception_graph("rect.png", prefix="hostile_ok", seed=5)
    graph["model"]["inputs"]["checkpoint"] = checkpoint
    entry = server.run(graph)
    return np.asarray(Image.open(io.BytesIO(server.view(entry["outputs"]["save"]["images"][0]))))


def test_extras_and_a_missing_fixed_buffer_are_accepted(server):
    """As the official loader: extra top-level entries are ignored (and logged), the fixed sin-cos pos_embed
    buffer may be absent; the answers equal the original checkpoint's."""
    models = server.dirs["models"] / "diception"
    ckpt = _dice()
    torch.save(dict(ckpt, optimizer={"state": {}, "param_groups": [{"lr": 1e-4}]}, epoch=3,
                    ema={"transformer": dict(ckpt["transformer"])}), models / "hostile_with_extras.pth")
    lean = dict(ckpt, transformer={k: v for k, v in ckpt["transformer"].items() if k != "pos_embed.pos_embed"})
    torch.save(lean, models / "hostile_no_pos_embed.pth")
    reference = _answer(server, "diception_tiny.pth")
    assert np.array_equal(_answer(server, "hostile_with_extras.pth"), reference)
    assert np.array_equal(_answer(server, "hostile_no_pos_embed.pth"), reference)
    assert "ignoring the top-level entries ['ema', 'epoch', 'optimizer']" in server.log_path.read_text()


def test_weight_case_count():
    assert len(SAM_CASES) + len(DICE_CASES) >= 20
