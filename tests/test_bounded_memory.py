"""Memory bounded in the image size (issue 19, part 2): the piecewise computations that avoid full-size float
temporaries give exactly (bitwise) what the whole-image ones gave. The memory itself is measured by
bench/memory_by_image_size.py (README, Memory), not here."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from PIL import Image

from models.diception.pipeline import postprocess, preprocess
from models.persam import encode_image, load_sam
from models.persam.features import as_uint8_image, as_uint8_mask, to_uint8
from models.persam.predict import predict
from models.persam.scale_aware import weighted_logits

ROOT = Path(__file__).resolve().parent.parent


def overlay_function():
    """PerSAM Segment's preview (models/rows.py, called by nodes/persam_nodes.py)."""
    from models.rows import overlay

    return overlay


def test_uint8_conversion_in_rows_equals_the_whole_image():
    image = np.random.default_rng(0).uniform(-0.2, 1.2, (700, 300, 3)).astype(np.float32)
    image[0, 0] = [0.5 / 255, 254.5 / 255, 1.5 / 255]  # rounding edges
    whole = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(to_uint8(image, rows=64), whole) and np.array_equal(as_uint8_image(image), whole)
    mask = image[..., 0].astype(np.float64)  # a float64 mask is converted as float32, as before
    assert np.array_equal(as_uint8_mask(mask, mask.shape), (np.clip(mask.astype(np.float32), 0, 1) * 255).round().astype(np.uint8))
    batch = torch.from_numpy(image)[None]
    resized = Image.fromarray(whole).resize((64, 64), Image.LANCZOS)
    expected = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    assert torch.equal(preprocess(batch, 64), (expected - 0.5) * 2)


def test_preview_in_rows_equals_the_whole_image_formula():
    overlay = overlay_function()
    images = torch.rand(2, 1100, 37, 3, generator=torch.Generator().manual_seed(0))
    masks = (torch.rand(2, 1100, 37, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    tint, m = torch.tensor((1.0, 0.2, 0.2)), masks[..., None] * 0.5
    assert torch.equal(overlay(images, masks), images * (1 - m) + tint * m)


@pytest.mark.parametrize("size", [(300, 500), (64, 64), (33, 97)])
def test_answers_resized_one_plane_at_a_time_equal_the_whole_resize(size):
    answer = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    whole = F.interpolate(answer, size=size, mode="bicubic", antialias=True, align_corners=False) if size != (64, 64) else answer
    expected = whole.clamp(0, 1).permute(0, 2, 3, 1)
    assert torch.equal(postprocess(answer, *size), expected)
    out = torch.zeros(5, *size, 3)
    postprocess(answer, *size, out=out[1:4])
    assert torch.equal(out[1:4], expected) and not out[0].any() and not out[4].any()


def test_full_size_masks_made_per_channel_equal_sams_postprocessing():
    data = ROOT / "tests" / "fixtures" / "persam"
    sam = load_sam(data / "tiny_sam.safetensors")
    image = np.random.default_rng(0).integers(0, 256, (300, 410, 3), np.uint8)
    features = encode_image(sam, image)
    found = predict(sam, features, torch.tensor([[200, 150]]), torch.tensor([1]), multimask=True)
    whole = sam.postprocess_masks(found.logits[None], features.input_size, features.original_size)[0]
    assert torch.equal(found.logits_high, whole) and torch.equal(found.masks, whole > sam.mask_threshold)
    assert torch.equal(found.mask(found.best()), whole[found.best()] > sam.mask_threshold)
    weights = torch.tensor([0.2, 0.5, 0.3])
    assert torch.allclose(weighted_logits(found.logit_high, weights), weighted_logits(whole, weights), rtol=0, atol=1e-5)


def blobs(seed: int, size=(150, 97)) -> np.ndarray:
    """Random shapes with holes, rings, a spiral-like corridor and pixels on the border: what banded hole filling
    must carry across bands."""
    rng = np.random.default_rng(seed)
    mask = rng.random(size) > 0.62
    mask = ndimage.binary_opening(mask, iterations=1)
    ring = np.zeros(size, bool)
    ring[20:120, 10:80] = True
    ring[24:116, 14:76] = False
    ring[60:64, 14:40] = True  # a wall inside the ring: the hole spans many bands
    return mask | ring


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dreambooth_masks_in_bands_equal_the_whole_image(seed):
    """DreamBooth Mask (issue 29): hole filling, grow and feather computed in bands of a few rows, in place, give
    exactly what scipy's whole-image computations give."""
    from models.dreambooth.masks import distance_outside, fill_holes_binary, grow_binary, training_mask

    mask = blobs(seed)
    assert np.array_equal(fill_holes_binary(mask.copy(), rows=7), ndimage.binary_fill_holes(mask))
    for pixels in (1, 3, 9):
        assert np.array_equal(grow_binary(mask, pixels, rows=5), distance_outside(mask) <= pixels)
    grown = ndimage.binary_fill_holes(mask)
    grown = distance_outside(grown) <= 4
    whole = np.clip(1 - distance_outside(grown) / (6 + 1), 0, 1).astype(np.float32)
    batch = torch.from_numpy(np.stack([mask, np.zeros_like(mask)]).astype(np.float32))
    calls = []
    out = training_mask(batch, 4, 6, True, in_place=True, rows=11, check=lambda: calls.append(1))
    assert out is batch and torch.equal(out[0], torch.from_numpy(whole)) and not out[1].any()  # empty stays empty
    assert len(calls) >= 2 * 3 * 150 // 11  # checked between bands of every step

    class Interrupted(Exception):
        pass

    def interrupt():
        if len(calls) > 3:
            raise Interrupted
        calls.append(1)

    calls.clear()
    with pytest.raises(Interrupted):  # an interrupt raised from check() stops it within a band
        training_mask(torch.from_numpy(mask.astype(np.float32)), 4, 6, True, rows=11, check=interrupt)
