"""Post-processing subject masks for training: grow, fill holes, feather, and the loss mask at latent size.

Memory and interrupts: every step works on bands of ``rows`` image rows (by default about BAND_PIXELS pixels; plus
the halo a step needs: ``pixels`` rows for grow, ``pixels + 1`` for feather) and writes its result in place, so the full-size temporaries are one or two
1-byte masks per image, never float64 distance maps of the whole image; ``check()`` is called between bands (raise
from it to interrupt). Each banded step gives exactly (bitwise) what the whole-image computation gives:
a pixel within ``pixels`` of the mask has its nearest mask pixel within ``pixels`` rows, so inside the halo; and hole
filling propagates "reachable from the border" across bands until nothing changes (the fixed point is the same set
scipy's ``binary_fill_holes`` keeps: background 4-connected to the border).
"""

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..rows import row_chunks

BAND_PIXELS = 1_000_000  # pixels per band (plus halo): ~0.05 s of distance transform between interrupt checks
ROWS = None  # rows per band: None = BAND_PIXELS // width (at least 16)


def band_rows(width: int, rows=None) -> int:
    return rows or max(16, BAND_PIXELS // max(1, width))


def _as_batch(masks: torch.Tensor) -> torch.Tensor:
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or 0 in masks.shape:
        raise ValueError(f"masks: expected a non-empty (B, H, W) batch, got shape {tuple(masks.shape)}")
    return masks.float()


def _no_check():
    pass


def distance_outside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the mask (0 inside; infinite everywhere for an empty mask)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(~mask)


def bands(height: int, rows: int):
    for top in range(0, height, rows):
        yield top, min(top + rows, height)


def banded_distance(binary: np.ndarray, top: int, bottom: int, halo: int) -> np.ndarray:
    """``distance_outside(binary)[top:bottom]``, exact wherever the distance is ≤ ``halo`` (farther: ≥ halo)."""
    start, stop = max(0, top - halo), min(binary.shape[0], bottom + halo)
    return distance_outside(binary[start:stop])[top - start : bottom - start]


def grow_binary(binary: np.ndarray, pixels: int, rows: int = ROWS, check=_no_check) -> np.ndarray:
    """The (H, W) bool mask dilated by ``pixels`` (Euclidean), as a new bool array, band by band."""
    if pixels <= 0:
        return binary.copy()
    out = np.empty_like(binary)
    for top, bottom in bands(binary.shape[0], band_rows(binary.shape[1], rows)):
        out[top:bottom] = banded_distance(binary, top, bottom, pixels) <= pixels
        check()
    return out


def fill_holes_binary(binary: np.ndarray, rows: int = ROWS, check=_no_check) -> np.ndarray:
    """``ndimage.binary_fill_holes(binary)`` band by band, in place: the background pixels not 4-connected to the
    image border become mask."""
    height, width = binary.shape
    reachable = np.zeros_like(binary)  # background known to be connected to the border
    order = list(bands(height, band_rows(width, rows)))
    changed = True
    while changed:
        changed = False
        for top, bottom in order:
            background = ~binary[top:bottom]
            labels, count = ndimage.label(background)  # 4-connectivity, as binary_fill_holes' structure
            if count == 0:
                check()
                continue
            seeds = reachable[top:bottom].copy()
            seeds[:, 0] |= background[:, 0]
            seeds[:, -1] |= background[:, -1]
            seeds[0] |= background[0] & (reachable[top - 1] if top > 0 else True)
            seeds[-1] |= background[-1] & (reachable[bottom] if bottom < height else True)
            hit = np.zeros(count + 1, bool)
            hit[labels[seeds]] = True
            hit[0] = False
            found = hit[labels]
            if (found & ~reachable[top:bottom]).any():
                reachable[top:bottom] |= found
                changed = True
            check()
        order.reverse()  # alternate sweeps carry reachability up and down
    for top, bottom in order:
        binary[top:bottom] |= ~reachable[top:bottom]
        check()
    return binary


def grow(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate binary masks by ``pixels`` (Euclidean distance): the loss acts at 1/8 resolution, so a margin
    keeps the subject's edge in the loss."""
    masks = _as_batch(masks)
    return torch.from_numpy(np.stack([grow_binary(m > 0.5, pixels) for m in masks.cpu().numpy()])).float()


def fill_holes(masks: torch.Tensor) -> torch.Tensor:
    masks = _as_batch(masks)
    return torch.from_numpy(np.stack([fill_holes_binary(m > 0.5) for m in masks.cpu().numpy()])).float()


def feather_into(out: np.ndarray, binary: np.ndarray, pixels: int, rows: int = ROWS, check=_no_check):
    """``out`` (H, W float32) = 1 inside ``binary``, falling linearly to 0 at ``pixels`` from it, band by band."""
    for top, bottom in bands(binary.shape[0], band_rows(binary.shape[1], rows)):
        if pixels <= 0:
            out[top:bottom] = binary[top:bottom]
        else:
            out[top:bottom] = np.clip(1 - banded_distance(binary, top, bottom, pixels + 1) / (pixels + 1), 0, 1)
        check()


def feather(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Soft edge outside the mask: 1 inside, falling linearly to 0 at ``pixels`` from it."""
    masks = _as_batch(masks)
    if pixels <= 0:
        return masks
    out = torch.empty(masks.shape)
    for i, m in enumerate(masks.cpu().numpy()):
        feather_into(out[i].numpy(), m > 0.5, pixels)
    return out


def latent_loss_mask(masks: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """The mask at latent resolution, area-downsampled by the VAE factor: (B, H // f, W // f) in [0, 1]."""
    masks = _as_batch(masks)
    h, w = masks.shape[-2:]
    if h < factor or w < factor:
        raise ValueError(f"masks: {w}x{h} is smaller than the VAE factor {factor}")
    return F.adaptive_avg_pool2d(masks[:, None], (h // factor, w // factor))[:, 0]


def training_mask(masks: torch.Tensor, grow_pixels: int = 4, feather_pixels: int = 0, holes: bool = True,
                  in_place: bool = False, rows: int = ROWS, check=_no_check) -> torch.Tensor:
    """Subject masks → training masks: fill holes (optional), grow, feather. ``in_place`` writes the result into
    ``masks`` (a float32 CPU (B, H, W) tensor the caller owns) instead of a new tensor; ``check()`` runs between
    bands of ``rows`` rows (raise from it to interrupt)."""
    masks = _as_batch(masks)
    out = masks if in_place else torch.empty(masks.shape)
    if in_place and (masks.dtype != torch.float32 or masks.device.type != "cpu" or not masks.is_contiguous()):
        raise ValueError("masks: in-place training masks need a contiguous float32 CPU tensor")
    for i in range(masks.shape[0]):
        found = masks[i].cpu().numpy()
        binary = np.empty(found.shape, bool)
        for top, bottom in bands(found.shape[0], band_rows(found.shape[1], rows)):
            np.greater(found[top:bottom], 0.5, out=binary[top:bottom])
            check()
        del found
        if holes:
            fill_holes_binary(binary, rows, check)
        if grow_pixels > 0:
            binary = grow_binary(binary, grow_pixels, rows, check)
        feather_into(out[i].numpy(), binary, feather_pixels, rows, check)
        del binary
    return out


def kept_regions(images: torch.Tensor, masks: torch.Tensor, rows: int = ROWS, check=_no_check) -> torch.Tensor:
    """The photos with the background darkened (× 0.25 where the mask is 0), ``rows`` rows at a time."""
    preview = torch.empty_like(images)
    rows = band_rows(images.shape[2], rows)
    for i in range(images.shape[0]):
        for band in row_chunks(images.shape[1], rows):
            preview[i, band] = images[i, band] * (0.25 + 0.75 * masks[i, band, :, None])
            check()
    return preview
