"""Decoders on synthetic answers with known truth."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from models.decoders import (
    align_depth, colorize, decode_depth, decode_instances, decode_keypoints, decode_mask, decode_normals,
    encode_normals, normalize, photo_per_answer, to_depth,
)


def ramp(h=32, w=64):
    return torch.linspace(0, 1, w).expand(h, w)


def test_a_rendered_depth_ramp_decodes_to_the_ramp_and_its_inverse():
    truth = ramp()
    answer = truth[None, ..., None].expand(1, 32, 64, 3)
    disparity = decode_depth(answer)[0]
    assert torch.allclose(disparity, truth, atol=1e-6)
    depth = to_depth(disparity, eps=1e-3)
    assert torch.allclose(depth, 1 / (truth + 1e-3), rtol=1e-5)
    assert torch.all(depth[:, 1:] < depth[:, :-1])  # near = bright = small depth
    assert torch.allclose(normalize(disparity[None] * 3 + 2)[0], truth, atol=1e-6)
    assert torch.allclose(1 - normalize(disparity[None])[0], truth.flip(-1), atol=1e-6)  # invert


def test_percentile_normalization_clips_outliers_and_constant_images_are_zero():
    x = ramp()[None].clone()
    x[0, 0, 0] = 100.0
    assert normalize(x, "percentile").max() == 1 and normalize(x, "minmax")[0, 5, 5] < 0.01
    assert normalize(torch.full((1, 4, 4), 0.3)).abs().max() == 0


@pytest.mark.parametrize("space", ["disparity", "depth"])
def test_alignment_recovers_a_known_scale_and_shift(space):
    disparity = 0.1 + 0.8 * ramp() + 0.05 * torch.rand(32, 64, generator=torch.Generator().manual_seed(0))
    scale, shift = 2.5, 0.4
    fitted = scale * disparity + shift
    truth = 1 / fitted if space == "disparity" else fitted
    sparse = torch.zeros_like(truth)
    sparse[::4, ::4] = truth[::4, ::4]  # known depth on a sparse grid only
    depth, s, t = align_depth(disparity, sparse, space=space)
    assert abs(s - scale) < 1e-4 and abs(t - shift) < 1e-4
    assert torch.allclose(depth, truth, rtol=1e-4)


def test_alignment_needs_known_depth():
    with pytest.raises(ValueError, match="at least 2 pixels"):
        align_depth(ramp(), torch.zeros(32, 64))


def sphere_normals(size=96):
    y, x = torch.meshgrid(torch.linspace(1, -1, size), torch.linspace(-1, 1, size), indexing="ij")
    inside = x**2 + y**2 < 0.95
    z = torch.sqrt((1 - x**2 - y**2).clamp(min=0))
    return torch.stack([x, y, z], -1), inside


@pytest.mark.parametrize("quantize", [False, True], ids=["float", "8-bit"])
def test_a_normal_sphere_decodes_to_unit_vectors_within_half_a_degree(quantize):
    truth, inside = sphere_normals()
    answer = encode_normals(truth)
    if quantize:
        answer = (answer * 255).round() / 255
    decoded = decode_normals(answer[None])[0]
    assert torch.allclose(decoded.norm(dim=-1), torch.ones(96, 96), atol=1e-5)
    angle = torch.rad2deg(torch.arccos((decoded * truth).sum(-1).clamp(-1, 1)))[inside]
    assert angle.max() < 0.5, f"max angular error {angle.max():.3f}°"


def test_normal_conventions_flip_axes():
    truth, _ = sphere_normals(8)
    answer = encode_normals(truth)[None]
    gl = decode_normals(answer)[0]
    dx = decode_normals(answer, "DirectX (+Y down)")[0]
    bae = decode_normals(answer, "ControlNet NormalBAE (+X left)")[0]
    assert torch.equal(dx[..., 1], -gl[..., 1]) and torch.equal(dx[..., 0], gl[..., 0])
    assert torch.equal(bae[..., 0], -gl[..., 0]) and torch.equal(bae[..., 1], gl[..., 1])


def jpeg(image: np.ndarray, quality=85) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def painted_instances(n=7, size=256, seed=0):
    """n random-colour rectangles/ellipses on black, some sharing a colour but not touching."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((size, size, 3), np.uint8)
    truth = []
    yy, xx = np.mgrid[:size, :size]
    cells = [(r, c) for r in range(3) for c in range(3)]
    from models.decoders.masks import srgb_to_lab

    colours = []  # random, but distinct (ΔE ≥ 40 from each other and from black), as instance colours are
    while len(colours) < n - 1:
        candidate = rng.integers(0, 256, size=3)
        lab = srgb_to_lab(candidate / 255)
        if all(np.linalg.norm(lab - srgb_to_lab(c / 255)) >= 40 for c in colours + [np.zeros(3)]):
            colours.append(candidate)
    colours.insert(1, colours[0])  # a repeated colour: two instances of one class must still be split
    for i, (r, c) in enumerate(cells[:n]):
        cy, cx = 42 + r * 85, 42 + c * 85
        if i % 2:
            shape = ((yy - cy) / 34) ** 2 + ((xx - cx) / 30) ** 2 <= 1
        else:
            shape = (abs(yy - cy) <= 30) & (abs(xx - cx) <= 34)
        canvas[shape] = colours[i]
        truth.append(shape)
    return canvas, truth


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_colour_map_of_n_instances_with_jpeg_noise_gives_n_masks(seed):
    canvas, truth = painted_instances(seed=seed)
    noisy = jpeg(canvas)
    masks = decode_instances(torch.from_numpy(noisy).float() / 255).numpy()
    assert len(masks) == len(truth)
    areas = masks.sum((1, 2))
    assert np.all(areas[:-1] >= areas[1:])  # ordered by area
    for t in truth:
        best = max(iou(m, t) for m in masks)
        assert best > 0.95, f"an instance is matched with IoU {best:.3f}"


def touching_pair(second_colour, blob_colour=None):
    """Two touching 40×40 squares on black: the left one red, the right one ``second_colour``; optionally a 5×5
    blob of ``blob_colour`` inside the left square (a fragment under min_area)."""
    canvas = np.zeros((64, 96, 3), np.uint8)
    canvas[12:52, 8:48] = (200, 40, 40)
    canvas[12:52, 48:88] = second_colour
    if blob_colour is not None:
        canvas[20:25, 20:25] = blob_colour
    left = np.zeros((64, 96), bool)
    left[12:52, 8:48] = True
    return torch.from_numpy(jpeg(canvas, quality=95)).float() / 255, left


def delta_e(a, b):
    from models.decoders.masks import srgb_to_lab
    return float(np.linalg.norm(srgb_to_lab(np.array(a) / 255) - srgb_to_lab(np.array(b) / 255)))


def test_touching_patches_closer_than_the_merge_tolerance_are_one_instance():
    unsure = (200, 80, 40)  # a model unsure of an object's colour paints it in patches like these
    assert 12 < delta_e((200, 40, 40), unsure) < 20
    answer, left = touching_pair(unsure)
    assert len(decode_instances(answer)) == 1
    assert len(decode_instances(answer, merge_tolerance=0)) == 2
    apart = (40, 40, 200)  # two objects in distinct colours stay apart, however much they touch
    assert delta_e((200, 40, 40), apart) > 40
    answer, left = touching_pair(apart, blob_colour=(200, 40, 200))  # a fragment joins the region around it
    masks = decode_instances(answer).numpy()
    assert len(masks) == 2
    assert max(iou(m, left) for m in masks) > 0.99


def test_touching_patches_with_no_edge_between_them_in_the_photo_are_one_instance():
    answer, left = touching_pair((40, 40, 200))  # two touching squares in distinct colours (ΔE > 40)
    one_object = np.full((64, 96, 3), 90, np.uint8)  # the photo: one grey object, striped as a texture is
    one_object[12:52, 8:88] = (150, 120, 60)
    one_object[12:52:4, 8:88] = (140, 112, 56)
    two_objects = one_object.copy()
    two_objects[12:52, 48:88] = (60, 150, 120)  # ... or two objects meeting where the answer's colours change
    photo = lambda image: torch.from_numpy(image).float() / 255  # noqa: E731
    assert len(decode_instances(answer)) == 2
    assert len(decode_instances(answer, photo=photo(one_object))) == 1
    assert len(decode_instances(answer, photo=photo(two_objects))) == 2
    big = torch.nn.functional.interpolate(photo(one_object).permute(2, 0, 1)[None], scale_factor=4).permute(0, 2, 3, 1)
    assert len(decode_instances(answer, photo=big[0])) == 1  # any size: resized to the answer's
    assert len(decode_instances(answer, photo=photo(one_object), edge_tolerance=1.0)) == 2  # the stripes are edges then
    answers = torch.stack([answer, answer])
    assert [p is None for p in photo_per_answer(answers, None)] == [True, True]
    assert len(photo_per_answer(answers, big)) == 2  # one photo for every answer
    with pytest.raises(ValueError, match="photo: 3 images for 2 answers"):
        photo_per_answer(answers, big.expand(3, -1, -1, -1))


def test_masks_threshold_and_empty_maps():
    answer = torch.zeros(2, 16, 16, 3)
    answer[0, 4:8, 4:8] = 1
    assert decode_mask(answer).sum() == 16
    assert decode_instances(torch.zeros(16, 16, 3)).shape == (0, 16, 16)  # all black: no instance


@pytest.mark.parametrize("bad,message", [
    (torch.zeros(1, 8, 8, 4), "expected RGB"), (torch.zeros(0, 8, 8, 3), "empty"),
    (torch.full((1, 8, 8, 3), float("nan")), "NaN"),
], ids=["4 channels", "empty batch", "NaN"])
def test_bad_answers_are_clear_errors(bad, message):
    for decode in (decode_depth, decode_normals, decode_mask):
        with pytest.raises(ValueError, match=message):
            decode(bad)


def test_keypoints_from_a_rendered_skeleton():
    from models.decoders.keypoints import JOINT_COLOURS

    canvas = np.zeros((128, 128, 3), np.float32)
    yy, xx = np.mgrid[:128, :128]
    joints = {0: (64, 20), 1: (64, 40), 2: (44, 42), 5: (84, 42), 8: (54, 90), 11: (74, 90)}
    for j, (x, y) in joints.items():
        canvas[(xx - x) ** 2 + (yy - y) ** 2 <= 16] = JOINT_COLOURS[j]
    pose = decode_keypoints(torch.from_numpy(canvas))
    assert pose["canvas_width"] == 128 and len(pose["people"]) == 1
    points = np.array(pose["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    for j, (x, y) in joints.items():
        assert abs(points[j, 0] - x) < 0.5 and abs(points[j, 1] - y) < 0.5 and points[j, 2] > 0.5
    assert points[3, 2] == 0  # a joint that is not drawn has confidence 0


def test_colormaps_span_their_palettes():
    values = torch.linspace(0, 1, 11)[None, None]
    gray = colorize(values, "gray")
    assert torch.allclose(gray[..., 0], values) and colorize(values, "turbo").shape == (1, 1, 11, 3)
    with pytest.raises(ValueError, match="colormap"):
        colorize(values, "jet")
