"""DICEPTION parity with the official code (tensors recorded in tests/fixtures/diception, see its README).

fp32 runs must agree to ~1e-5; bf16 runs stage-wise within max-abs 0.08 and rel-L2 3e-2, with the
recorded random draws (VAE posterior noise, initial latents) injected where the official code drew them.
"""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from PIL import Image
from safetensors.torch import load_file

from models.diception import load_pipeline
from models.diception.pipeline import initial_noise, point_slots, preprocess
from models.diception.prompts import encode_prompt, tokenize

DICE = FIXTURES / "diception"
TOL = {"fp32": (2e-5, 1e-5), "bf16": (0.08, 3e-2)}  # max-abs, rel-L2


def run_names(variant):
    index = json.loads((DICE / variant / "index.json").read_text())
    return [r if isinstance(r, str) else r["name"] for r in index["runs"]]


@pytest.fixture(scope="module", params=["pth", "safetensors"])
def pipelines(request, tmp_path_factory):
    cache = tmp_path_factory.mktemp("prompt_cache")
    ckpt = DICE / "model" / f"diception_tiny.{request.param}"
    return {
        "fp32": load_pipeline(DICE / "model" / "tiny_sd3", ckpt, torch.float32, cache),
        "bf16": load_pipeline(DICE / "model" / "tiny_sd3", ckpt, torch.bfloat16, cache),
    }


def assert_close(name, ours, ref, variant):
    ours, ref = ours.float().cpu(), ref.float().cpu()
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    max_abs, rel = TOL[variant]
    diff = (ours - ref).abs().max().item()
    rel_l2 = ((ours - ref).norm() / ref.norm().clamp_min(1e-12)).item()
    assert diff <= max_abs and rel_l2 <= rel, f"{name}: max-abs {diff:.3g}, rel-L2 {rel_l2:.3g} (limits {max_abs}, {rel})"


def load_run(variant, run):
    return load_file(str(DICE / variant / f"{run}.safetensors")), json.loads((DICE / variant / f"{run}.json").read_text())


def load_image(meta):
    array = np.asarray(Image.open(DICE / "images" / meta["image"]["file"]).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array)[None]


@pytest.mark.parametrize("variant,run", [(v, r) for v in ("fp32", "bf16") for r in run_names(v)])
def test_diception_parity_stagewise(pipelines, variant, run):
    pipe = pipelines[variant]
    ref, meta = load_run(variant, run)
    cfg = meta["guidance_scale"] > 1

    # exact: preprocessing, point slots (the official inference.py stores x first), noise, schedule
    image = load_image(meta)
    h, w = image.shape[1:3]
    assert torch.equal(preprocess(image, meta["image"]["target_size_wh"][0]), ref["input_images_f32"])
    coords, labels = point_slots([(x * w, y * h) for y, x in meta["points_yx"] or []], w, h, order="xy")
    assert torch.equal(coords, ref["coor_point_f32"]) and torch.equal(labels, ref["point_labels_f32"][..., 0])
    assert torch.equal(initial_noise(meta["seed"], ref["init_latents"].shape).to(ref["init_latents"].dtype), ref["init_latents"])

    # text: token ids exactly, embeddings within tolerance
    encoders = pipe.text_encoder_source.load()
    for prefix, prompt in [("", meta["prompt"])] + ([("negative_", "")] if cfg else []):
        ids = tokenize(encoders, prompt)
        for ours, key in (("clip_l", "clip_l_input_ids"), ("clip_g", "clip_g_input_ids"), ("t5", "t5_input_ids")):
            assert torch.equal(ids[ours], ref[prefix + key]), f"{prefix}{key} differ"
        embeds, pooled = encode_prompt(encoders, prompt)
        assert_close(prefix + "prompt_embeds", embeds, ref[prefix + "prompt_embeds"], variant)
        assert_close(prefix + "pooled_prompt_embeds", pooled, ref[prefix + "pooled_prompt_embeds"], variant)

    # points, condition image (recorded posterior noise injected)
    point_embeds = pipe.point_encoder(ref["coor_point"], ref["point_labels"])
    assert_close("point_embeds_cond", point_embeds, ref["point_embeds_cond"], variant)
    cond = pipe.encode_image(ref["input_images"], noise=ref["vae_sample_noise"])
    assert_close("cond_latents", cond, ref["cond_latents"], variant)

    # every denoising step from the recorded inputs, then the decoder
    if cfg:
        inputs = [(ref["negative_" + k], ref[k]) for k in ("prompt_embeds", "pooled_prompt_embeds")]
        inputs.append((torch.zeros_like(ref["point_embeds_cond"]), ref["point_embeds_cond"]))
    else:
        inputs = [ref["prompt_embeds"], ref["pooled_prompt_embeds"], ref["point_embeds_cond"]]
    recorded = {}
    latents = pipe.denoise(
        ref["init_latents"], ref["cond_latents"], *inputs, steps=meta["num_inference_steps"],
        guidance=meta["guidance_scale"], record=recorded.__setitem__,
    )
    assert len(recorded) == 4 * meta["num_inference_steps"]
    for key, value in recorded.items():
        assert_close(key, value, ref[key], variant)
    assert_close("final_latents", latents, ref["final_latents"], variant)
    assert_close("image", pipe.decode(ref["final_latents"]), ref["image"], variant)


@pytest.mark.parametrize("variant,run", [("fp32", "sq64_seg2pt_s4_g2"), ("bf16", "sq64_depth_s4_g2")])
def test_diception_parity_end_to_end(pipelines, variant, run):
    """Our own stages chained (only the two random draws injected) reproduce the official image."""
    pipe = pipelines[variant]
    ref, meta = load_run(variant, run)
    image = load_image(meta)
    h, w = image.shape[1:3]
    pixels = preprocess(image, meta["image"]["target_size_wh"][0])
    coords, labels = point_slots([(x * w, y * h) for y, x in meta["points_yx"] or []], w, h, order="xy")
    embeds = pipe.encode_prompts([meta["prompt"], ""])
    point_embeds = pipe.point_encoder(coords, labels)
    cond = pipe.encode_image(pixels.to(pipe.dtype), noise=ref["vae_sample_noise"])
    latents = pipe.denoise(
        initial_noise(meta["seed"], ref["init_latents"].shape), cond,
        (embeds[""][0], embeds[meta["prompt"]][0]), (embeds[""][1], embeds[meta["prompt"]][1]),
        (torch.zeros_like(point_embeds), point_embeds), steps=meta["num_inference_steps"], guidance=meta["guidance_scale"],
    )
    tol = 1e-4 if variant == "fp32" else 0.1
    diff = (pipe.decode(latents).float() - ref["image"].float()).abs().max().item()
    assert diff <= tol, f"end-to-end image max-abs {diff:.3g} > {tol}"
