"""SAM image features of one image, with the sizes needed to map results back to it."""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from ..rows import to_uint8

MIN_SIDE = 32


@dataclass
class ImageFeatures:
    features: torch.Tensor  # (1, C, h, w) on the grid of SAM's image encoder
    input_size: tuple  # size after resize-longest-side, before padding
    original_size: tuple  # (H, W) of the image


def as_uint8_image(image) -> np.ndarray:
    """(H, W, 3) float in [0, 1] (ComfyUI) or uint8 → (H, W, 3) uint8."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image: expected (H, W, 3) RGB, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = to_uint8(array)
    if min(array.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image: {array.shape[1]}x{array.shape[0]} is too small; SAM needs at least {MIN_SIDE} px per side")
    return array


@torch.no_grad()
def encode_image(sam, image) -> ImageFeatures:
    """Resize the longest side to SAM's input size, normalise, pad, and run the image encoder."""
    array = as_uint8_image(image)
    resized = ResizeLongestSide(sam.image_encoder.img_size).apply_image(array)
    tensor = torch.as_tensor(resized, device=sam.device).permute(2, 0, 1)[None].float()
    features = sam.image_encoder(sam.preprocess(tensor))
    return ImageFeatures(features, tuple(resized.shape[:2]), tuple(array.shape[:2]))


@torch.no_grad()
def encode_images(sam, images, batch_size: int = 4) -> list:
    """``encode_image`` for several images, ``batch_size`` per image-encoder call (each image is padded to
    SAM's square input, so sizes may differ). Returns one ``ImageFeatures`` per image."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected at least 1 image per call, got {batch_size}")
    arrays = [as_uint8_image(image) for image in images]
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    found = []
    for start in range(0, len(arrays), batch_size):
        resized = [transform.apply_image(a) for a in arrays[start : start + batch_size]]
        tensors = [sam.preprocess(torch.as_tensor(r, device=sam.device).permute(2, 0, 1)[None].float()) for r in resized]
        features = sam.image_encoder(torch.cat(tensors))
        for i, (r, a) in enumerate(zip(resized, arrays[start : start + batch_size])):
            found.append(ImageFeatures(features[i : i + 1], tuple(r.shape[:2]), tuple(a.shape[:2])))
    return found


def mask_on_grid(sam, mask: np.ndarray, grid) -> torch.Tensor:
    """The reference mask as SAM sees it, on the feature grid: resize-longest-side, pixel normalisation
    (channel 0), pad, bilinear to the grid. The official code keeps cells > 0, i.e. mask values above
    ≈ 124/255 after resizing; 0/1 masks must therefore be given as 0/255 (``as_uint8_mask``)."""
    rgb = np.repeat(mask[..., None], 3, axis=2)
    resized = ResizeLongestSide(sam.image_encoder.img_size).apply_image(rgb)
    tensor = torch.as_tensor(resized[..., 0], device=sam.device).float()
    normalised = (tensor - sam.pixel_mean[0]) / sam.pixel_std[0]
    size = sam.image_encoder.img_size
    padded = F.pad(normalised, (0, size - normalised.shape[-1], 0, size - normalised.shape[-2]))
    return F.interpolate(padded[None, None], size=tuple(grid), mode="bilinear")[0, 0]


def as_uint8_mask(mask, shape) -> np.ndarray:
    """A mask (float 0..1 as ComfyUI's MASK, bool, or uint8) → (H, W) uint8 0..255 matching ``shape``."""
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"mask: expected a single (H, W) mask, got shape {array.shape}")
    if array.shape != tuple(shape):
        raise ValueError(
            f"mask: its size {array.shape[1]}x{array.shape[0]} differs from the image's {shape[1]}x{shape[0]}; "
            "draw the mask on this image (ComfyUI's mask editor) or resize it to the image first"
        )
    if array.dtype == np.uint8:
        return array
    return to_uint8(array.astype(np.float32, copy=False))
