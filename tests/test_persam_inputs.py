"""PerSAM engine: ComfyUI-style masks, and clear errors for bad references and checkpoints."""

import pickle

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from safetensors.torch import load_file, save_file

from models.persam import load_sam, make_reference
from models.persam.features import mask_on_grid
from models.weights import WeightsError

PERSAM = FIXTURES / "persam"


@pytest.fixture(scope="module")
def sam():
    return load_sam(PERSAM / "tiny_sam.pth")


@pytest.fixture(scope="module")
def ref():
    return load_file(str(PERSAM / "persam_reference.safetensors"))


def test_a_comfyui_float_mask_gives_the_official_embedding(sam, ref):
    """ComfyUI MASKs are 0..1 floats. Given raw to the official code (threshold > 0 after SAM's pixel
    normalisation) a 0/1 mask selects nothing; ours scales it to 0..255 first, so the fixture's palette
    mask as a float (128/255) reproduces the official embedding, and a 0/1 mask selects the subject."""
    palette = ref["ref_mask_rgb"][..., 0].numpy()
    image = torch.from_numpy(ref["ref_image"].numpy().astype(np.float32) / 255)
    as_float = torch.from_numpy(palette.astype(np.float32) / 255)
    assert torch.allclose(make_reference(sam, image, as_float).embedding, ref["target_embedding"], atol=1e-6)

    binary = (palette > 0).astype(np.float32)
    assert not (mask_on_grid(sam, binary.astype(np.uint8), (64, 64)) > 0).any()  # the official trap
    embedding = make_reference(sam, image, torch.from_numpy(binary)).embedding
    assert embedding.shape == (1, 1, 32) and torch.isfinite(embedding).all()


def test_an_empty_reference_mask_is_a_clear_error(sam, ref):
    with pytest.raises(ValueError, match="reference mask is empty"):
        make_reference(sam, ref["ref_image"].numpy(), np.zeros((240, 320), np.float32))


def test_a_mask_of_another_size_is_a_clear_error(sam, ref):
    with pytest.raises(ValueError, match="differs from the image"):
        make_reference(sam, ref["ref_image"].numpy(), np.ones((100, 100), np.float32))


def test_too_small_images_are_refused(sam):
    with pytest.raises(ValueError, match="at least 32 px"):
        make_reference(sam, np.zeros((20, 64, 3), np.uint8), np.ones((20, 64), np.float32))


def test_a_non_sam_checkpoint_is_refused(tmp_path):
    path = tmp_path / "not_sam.safetensors"
    save_file({"transformer.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(WeightsError, match="not a Segment Anything checkpoint"):
        load_sam(path)


class Payload:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_a_pickle_that_is_not_weights_only_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"image_encoder.x": Payload()}, path)  # a torch checkpoint smuggling a Python object
    with pytest.raises(WeightsError, match="not a weights-only checkpoint"):
        load_sam(path)
    path.write_bytes(pickle.dumps({"image_encoder.x": Payload()}))  # a plain pickle is not even unpickled
    with pytest.raises(WeightsError, match="plain Python pickle"):
        load_sam(path)


def test_both_checkpoint_formats_load_the_same_sam():
    a, b = load_sam(PERSAM / "tiny_sam.pth"), load_sam(PERSAM / "tiny_sam.safetensors")
    assert a.state_dict().keys() == b.state_dict().keys()
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert x.dtype == y.dtype and torch.equal(x, y), name


def test_the_closed_form_loss_and_gradient_match_autograd():
    from models.persam.scale_aware import MixedLoss, dice_loss, mixing_weights, sigmoid_focal_loss

    torch.manual_seed(0)
    logits, target = torch.randn(3, 30, 40) * 4, torch.rand(30, 40) > 0.6
    for a, b in ((1 / 3, 1 / 3), (0.8, -0.4), (-0.2, 0.1)):
        ab = torch.tensor([[a], [b]], dtype=torch.float64, requires_grad=True)
        mixed = (logits.double().flatten(1) * mixing_weights(ab)).sum(0, keepdim=True)
        t = target.reshape(1, -1).double()
        loss = dice_loss(mixed, t) + sigmoid_focal_loss(mixed, t)
        loss.backward()
        ours, ga, gb = MixedLoss(logits, target)(a, b)
        assert abs(ours - loss.item()) < 1e-5
        assert abs(ga - ab.grad[0, 0].item()) < 1e-5 and abs(gb - ab.grad[1, 0].item()) < 1e-5

        def total(x):
            m = (logits.double().flatten(1) * mixing_weights(x.reshape(2, 1))).sum(0, keepdim=True)
            return dice_loss(m, t) + sigmoid_focal_loss(m, t)

        hessian = torch.autograd.functional.hessian(total, torch.tensor([a, b], dtype=torch.float64))
        _, _, ours_h = MixedLoss(logits, target).taylor(a, b)
        assert torch.allclose(torch.tensor(ours_h, dtype=torch.float64), hessian, atol=1e-4, rtol=1e-3), (ours_h, hessian)


def test_the_trust_region_fit_matches_the_exact_fit():
    from models.persam.scale_aware import scale_aware_weights

    torch.manual_seed(1)
    logits, target = torch.randn(3, 60, 80) * 6, torch.rand(60, 80) > 0.5
    exact, exact_losses = scale_aware_weights(logits, target, iterations=300, trust=0.0)
    fast, fast_losses = scale_aware_weights(logits, target, iterations=300)
    assert (exact - fast).abs().max() < 1e-5 and (exact_losses - fast_losses).abs().max() < 1e-5


def test_multiple_instances_look_outside_the_found_ones(sam, ref):
    from models.persam import segment_instances

    reference = make_reference(sam, ref["ref_image"].numpy(), ref["ref_mask_rgb"][..., 0].numpy())
    image = load_file(str(PERSAM / "persam_test1.safetensors"))["image"].numpy()
    one = segment_instances(sam, reference, image, max_instances=1)
    assert len(one) == 1
    several = segment_instances(sam, reference, image, max_instances=3, overlap_stop=1.01)
    assert len(several) == 3 and torch.equal(several[0].mask, one[0].mask)
    for earlier, later in zip(several, several[1:]):
        x, y = later.points[0].tolist()
        assert not earlier.mask[y, x] and [x, y] != earlier.points[0].tolist(), "the next instance reuses a found one"
