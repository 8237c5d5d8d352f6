"""Row-chunked processing of full-size images: a few rows at a time, so that no full-size float temporary exists
besides the output, however large the image (a 12000x12000 float32 image is 1.7 GB; three whole-image
temporaries would triple it)."""

import numpy as np
import torch

ROWS = 256  # rows per chunk: 256 rows of a 12000-pixel-wide RGB float32 image are 37 MB


def row_chunks(height: int, rows: int = ROWS):
    """The slices ``[top, top + rows)`` covering ``height`` rows, in order."""
    return (slice(top, top + rows) for top in range(0, height, rows))


def to_uint8(image, rows: int = ROWS) -> np.ndarray:
    """``round(clip(x, 0, 1) * 255)`` as uint8, chunk by chunk: an (H, W, ...) float array or tensor in [0, 1] →
    uint8 array of the same shape."""
    out = np.empty(tuple(image.shape), np.uint8)
    for rows in row_chunks(image.shape[0], rows):
        chunk = image[rows]
        chunk = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else chunk
        out[rows] = (np.clip(chunk, 0, 1) * 255).round()
    return out


def overlay(images: torch.Tensor, masks: torch.Tensor, colour=(1.0, 0.2, 0.2), alpha=0.5) -> torch.Tensor:
    """The images (B, H, W, 3) with their masks (B, H, W) tinted (a preview), chunk by chunk: no full-size temporaries
    besides the output."""
    tint = torch.tensor(colour, dtype=images.dtype, device=images.device)
    out = torch.empty_like(images)
    for i in range(images.shape[0]):
        for rows in row_chunks(images.shape[1]):
            m = masks[i, rows, :, None].to(images.dtype) * alpha
            out[i, rows] = images[i, rows] * (1 - m) + tint * m
    return out
