"""Checks shared by the decoders: an RGB answer batch (B, H, W, 3) of finite values."""

import torch


def check_rgb(images: torch.Tensor, name: str = "image") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name}: expected RGB images (B, H, W, 3), got shape {tuple(images.shape)}")
    if 0 in images.shape:
        raise ValueError(f"{name}: the batch is empty (shape {tuple(images.shape)})")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return images.float()
