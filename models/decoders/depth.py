"""Depth from DICEPTION's depth answers.

DICEPTION was trained on disparity (1/depth), min-max normalised to [0, 1] and copied into the three
channels: the decoded value is the channel mean, **near = bright**, and it is affine-invariant (unknown
scale and shift). Absolute depth needs an alignment to known depth (``align_depth``).
"""

import torch

from .validation import check_rgb


def decode_depth(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) answers in [0, 1] → (B, H, W) disparity in [0, 1] (near = 1)."""
    return check_rgb(images).mean(-1).clamp(0, 1)


def to_depth(disparity: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Relative depth = 1 / (disparity + eps): far = large. Still up to an unknown scale and shift of the disparity."""
    return 1.0 / (disparity.clamp(min=0) + eps)


def normalize(values: torch.Tensor, mode: str = "minmax", low: float = 2.0, high: float = 98.0) -> torch.Tensor:
    """Per image to [0, 1]: ``minmax``, ``percentile`` (``low``–``high`` percentiles, clipped) or ``none``.
    A constant image maps to 0."""
    if mode == "none":
        return values
    if mode not in ("minmax", "percentile"):
        raise ValueError(f"normalization: expected 'minmax', 'percentile' or 'none', got {mode!r}")
    flat = values.reshape(values.shape[0], -1).float()
    if mode == "minmax":
        lo, hi = flat.min(1).values, flat.max(1).values
    else:
        lo, hi = torch.quantile(flat, low / 100, dim=1), torch.quantile(flat, high / 100, dim=1)
    shape = (-1,) + (1,) * (values.ndim - 1)
    span = (hi - lo).clamp(min=1e-12).reshape(shape)
    return ((values - lo.reshape(shape)) / span).clamp(0, 1) * (hi > lo).reshape(shape)


def align_depth(prediction: torch.Tensor, target: torch.Tensor, valid=None, space: str = "disparity", eps: float = 1e-6):
    """Least-squares scale and shift so that ``scale·prediction + shift ≈ target`` on ``valid`` pixels.

    ``prediction`` is the decoded disparity (H, W); ``target`` known metric depth (sparse: zeros or
    ``valid`` = False where unknown). In ``space='disparity'`` the fit is done against 1/target and the
    aligned disparity is inverted to depth (as the Marigold/GenPercept evaluation of disparity models does);
    in ``'depth'`` the prediction is fitted to depth directly. Returns (aligned depth, scale, shift).
    """
    prediction, target = prediction.double(), target.double().to(prediction.device)
    if prediction.shape != target.shape:
        raise ValueError(f"reference depth: shape {tuple(target.shape)} differs from the prediction's {tuple(prediction.shape)}")
    valid = (target > eps) & torch.isfinite(target) if valid is None else valid.bool() & (target > eps)
    if int(valid.sum()) < 2:
        raise ValueError("reference depth: at least 2 pixels with known depth (> 0) are needed to fit scale and shift")
    if space not in ("disparity", "depth"):
        raise ValueError(f"space: expected 'disparity' or 'depth', got {space!r}")
    goal = 1.0 / target[valid] if space == "disparity" else target[valid]
    x = prediction[valid]
    design = torch.stack([x, torch.ones_like(x)], dim=1)
    solution = torch.linalg.lstsq(design, goal[:, None]).solution[:, 0]
    scale, shift = float(solution[0]), float(solution[1])
    fitted = scale * prediction + shift
    depth = 1.0 / fitted.clamp(min=eps) if space == "disparity" else fitted
    return depth.float(), scale, shift
