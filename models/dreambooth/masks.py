"""Post-processing subject masks for training: grow, fill holes, feather, and the loss mask at latent size."""

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def _as_batch(masks: torch.Tensor) -> torch.Tensor:
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or 0 in masks.shape:
        raise ValueError(f"masks: expected a non-empty (B, H, W) batch, got shape {tuple(masks.shape)}")
    return masks.float()


def distance_outside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the mask (0 inside; infinite everywhere for an empty mask)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(~mask)


def grow(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate binary masks by ``pixels`` (Euclidean distance): the loss acts at 1/8 resolution, so a margin
    keeps the subject's edge in the loss."""
    masks = _as_batch(masks)
    if pixels <= 0:
        return (masks > 0.5).float()
    out = [distance_outside(m > 0.5) <= pixels for m in masks.cpu().numpy()]
    return torch.from_numpy(np.stack(out)).float()


def fill_holes(masks: torch.Tensor) -> torch.Tensor:
    masks = _as_batch(masks)
    return torch.from_numpy(np.stack([ndimage.binary_fill_holes(m > 0.5) for m in masks.cpu().numpy()])).float()


def feather(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Soft edge outside the mask: 1 inside, falling linearly to 0 at ``pixels`` from it."""
    masks = _as_batch(masks)
    if pixels <= 0:
        return masks
    out = [np.clip(1 - distance_outside(m > 0.5) / (pixels + 1), 0, 1) for m in masks.cpu().numpy()]
    return torch.from_numpy(np.stack(out)).float()


def latent_loss_mask(masks: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """The mask at latent resolution, area-downsampled by the VAE factor: (B, H // f, W // f) in [0, 1]."""
    masks = _as_batch(masks)
    h, w = masks.shape[-2:]
    if h < factor or w < factor:
        raise ValueError(f"masks: {w}x{h} is smaller than the VAE factor {factor}")
    return F.adaptive_avg_pool2d(masks[:, None], (h // factor, w // factor))[:, 0]


def training_mask(masks: torch.Tensor, grow_pixels: int = 4, feather_pixels: int = 0, holes: bool = True) -> torch.Tensor:
    """Subject masks → training masks: fill holes (optional), grow, feather."""
    masks = _as_batch(masks)
    if holes:
        masks = fill_holes(masks)
    return feather(grow(masks, grow_pixels), feather_pixels)
