"""Writing depth maps: 16-bit PNG and float32 ``.npy``, numbered so that nothing existing is overwritten."""

from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from ..output_paths import output_prefix

FORMATS = {"png16+npy": (".png", ".npy"), "png16": (".png",), "npy": (".npy",)}


def free_stem(folder: Path, prefix: str, suffixes, start: int = 1) -> Path:
    """``folder/prefix_00001`` (or the next number) such that no file with any of ``suffixes`` exists."""
    counter = start
    while True:
        stem = folder / f"{prefix}_{counter:05}"
        if not any(stem.with_suffix(s).exists() for s in suffixes):
            return stem
        counter += 1


def depth_png16(depth: np.ndarray):
    """Values in [0, 1] are stored × 65535; larger (metric) depth in millimetres. The scale is in the PNG text."""
    if float(np.nanmax(depth)) <= 1.0:
        scale, note = 65535.0, "value = pixel / 65535"
    else:
        scale, note = 1000.0, "depth in metres = pixel / 1000"
    pixels = np.clip(np.round(np.nan_to_num(depth) * scale), 0, 65535).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text("depth_scale", note)
    return Image.fromarray(pixels), info


def save_depth(depth: np.ndarray, folder, prefix: str, formats: str = "png16+npy") -> list:
    """Write one (H, W) depth map; returns the written paths."""
    if formats not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {formats!r}")
    if depth.ndim != 2 or 0 in depth.shape:
        raise ValueError(f"depth: expected one (H, W) map, got shape {depth.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffixes = FORMATS[formats]
    stem = free_stem(folder, prefix, suffixes)
    written = []
    for suffix in suffixes:
        path = stem.with_suffix(suffix)
        if suffix == ".png":
            image, info = depth_png16(depth)
            image.save(path, pnginfo=info)
        else:
            np.save(path, depth.astype(np.float32))
        written.append(path)
    return written


def save_depth_maps(output_dir, filename_prefix: str, depths, formats: str = "png16+npy") -> list:
    """Write (H, W) depth maps under ``output_dir`` as ``filename_prefix_00001.png``… (``filename_prefix`` is checked
    by models.output_paths: relative, inside the output folder); returns the written paths."""
    if formats not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {formats!r}")
    folder, prefix = output_prefix(output_dir, filename_prefix, len("_00001") + max(len(s) for s in FORMATS[formats]))
    return [path for depth in depths for path in save_depth(depth, folder, prefix, formats)]
