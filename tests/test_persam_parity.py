"""PerSAM / PerSAM-F parity with the official code (tensors recorded in tests/fixtures/persam, see its README).

Tolerances of the README: 1e-4 on features, similarities, logits, weights and losses; points, boxes and
best indices exactly; masks equal except where the logit is within 1e-4 of 0.
"""

import pytest
import torch
from conftest import FIXTURES
from safetensors.torch import load_file

from models.persam import encode_image, load_sam, make_reference
from models.persam.cascade import persam_f_segment, persam_segment
from models.persam.features import mask_on_grid
from models.persam.location_prior import target_embedding

PERSAM = FIXTURES / "persam"
TOL = 1e-4


@pytest.fixture(scope="module")
def sam():
    """The official checkpoint format (.pth); the .safetensors conversion loads the same SAM, tensor for tensor
    (test_persam_inputs.py), so parity is not run twice."""
    return load_sam(PERSAM / "tiny_sam.pth")


def fixture(name):
    return load_file(str(PERSAM / f"{name}.safetensors"))


def close(name, ours, ref):
    diff = (ours.float() - ref.float()).abs().max().item()
    assert ours.shape == ref.shape and diff <= TOL, f"{name}: max-abs {diff:.3g}, shape {tuple(ours.shape)} vs {tuple(ref.shape)}"


def masks_agree(name, ours, ref, logits):
    differ = (ours != ref) & (logits.abs() > TOL)
    assert not differ.any(), f"{name}: {int(differ.sum())} pixels differ away from the decision boundary"


def test_persam_parity_reference(sam):
    ref = fixture("persam_reference")
    features = encode_image(sam, ref["ref_image"].numpy())
    close("ref_features", features.features, ref["ref_features"])
    grid = mask_on_grid(sam, ref["ref_mask_rgb"][..., 0].numpy(), features.features.shape[-2:])
    close("ref_mask_on_grid", grid, ref["ref_mask_on_grid"])
    close("target_embedding", target_embedding(features.features, grid), ref["target_embedding"])


@pytest.mark.parametrize("test", ["persam_test1", "persam_test2"])
def test_persam_parity_segment(sam, test):
    ref, rec = fixture("persam_reference"), fixture(test)
    features = encode_image(sam, rec["image"].numpy())
    close("features", features.features, rec["features"])
    result = persam_segment(sam, features, ref["target_embedding"])
    close("similarity", result.similarity, rec["similarity"])
    assert torch.equal(result.points, rec["points_xy"]) and torch.equal(result.labels, rec["point_labels"])
    close("attn_sim", result.passes["attn_sim"], rec["attn_sim"])
    for name in ("pass1", "pass2", "pass3"):
        ours = result.passes[name]
        for key in ("logits", "logits_high", "scores"):
            close(f"{name}_{key}", getattr(ours, key), rec[f"{name}_{key}"])
        masks_agree(f"{name}_masks", ours.masks, rec[f"{name}_masks"], ours.logits_high)
    assert torch.equal(result.passes["pass3_box"], rec["pass3_box"])
    masks_agree("final_mask", result.mask, rec["final_mask"], result.passes["pass3"].logits_high[result.passes["pass3"].best()])


def test_persam_parity_fine_tune(sam):
    """PerSAM-F's weights from one decoder pass match the official 1000 decoder passes."""
    ref, rec = fixture("persam_reference"), fixture("persamf_reference")
    reference = make_reference(sam, ref["ref_image"].numpy(), ref["ref_mask_rgb"][..., 0].numpy(), fine_tune=True)
    emb = reference.embedding.reshape(1, -1)
    close("target_feat", emb / emb.norm(dim=-1, keepdim=True), rec["target_feat"])
    close("losses", reference.losses, rec["losses"])
    close("weights", reference.weights, rec["weights"].flatten())


@pytest.mark.parametrize("test", ["persamf_test1", "persamf_test2"])
def test_persam_parity_fine_tuned_segment(sam, test):
    weights = fixture("persamf_reference")["weights"].flatten()
    target = fixture("persamf_reference")["target_feat"]
    rec = fixture(test)
    image = fixture(test.replace("persamf", "persam"))["image"].numpy()
    result = persam_f_segment(sam, encode_image(sam, image), target[None], weights)
    close("similarity", result.similarity, rec["similarity"])
    assert torch.equal(result.points, rec["points_xy"]) and torch.equal(result.labels, rec["point_labels"])
    close("weighted_logit_high", result.passes["weighted_logit_high"], rec["weighted_logit_high"])
    close("weighted_logit", result.passes["weighted_logit"], rec["weighted_logit"])
    masks_agree("weighted_mask", result.passes["weighted_logit_high"] > 0, rec["weighted_mask"], result.passes["weighted_logit_high"])
    for name in ("pass2", "pass3"):
        assert torch.equal(result.passes[f"{name}_box"], rec[f"{name}_box"])
        close(f"{name}_logits", result.passes[name].logits, rec[f"{name}_logits"])
        close(f"{name}_scores", result.passes[name].scores, rec[f"{name}_scores"])
        masks_agree(f"{name}_masks", result.passes[name].masks, rec[f"{name}_masks"], result.passes[name].logits_high)
    final = result.passes["pass3"]
    masks_agree("final_mask", result.mask, rec["final_mask"], final.logits_high[final.best()])
