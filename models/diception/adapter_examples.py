"""Example pairs for a new task, read from image files as ComfyUI's Load Image reads them: turned upright by their
EXIF orientation, and 16-bit grey images (as the pack's Save Depth writes them) scaled by 65535 instead of read as
white. Plain PIL and numpy: no ComfyUI import."""

import os

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}  # the modes 16-bit grey PNGs open in


def read_image(path) -> torch.Tensor:
    """An (H, W, 3) float32 image in [0, 1], upright (EXIF orientation applied)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in SIXTEEN_BIT:
            grey = np.asarray(image, dtype=np.float32) / 65535
            return torch.from_numpy(np.repeat(grey[..., None], 3, axis=-1).clip(0, 1))
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255)


def image_files(folder, role: str) -> dict:
    """``{stem: file name}`` of the images in ``folder`` (``role``: images or targets, for the messages), sorted."""
    if not os.path.isdir(folder):
        raise ValueError(f"folder: no {role}/ folder in {os.path.dirname(folder)}; expected images/ and targets/ with files paired by name")
    files = {}
    for name in sorted(os.listdir(folder)):  # sorted: never the directory's own order
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            if stem in files:
                raise ValueError(f"folder: {role}/ has two files named {stem!r} ({files[stem]} and {name}); keep one")
            files[stem] = name
    return files
