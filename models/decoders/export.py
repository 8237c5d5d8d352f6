"""Writing depth maps: 16-bit PNG and float32 ``.npy``, numbered so that nothing existing is overwritten, each file
under its final name only when complete (models.publish)."""

import os
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from ..output_paths import output_prefix
from ..publish import fsync_path, publish_file, remove, save_error, temporary_name, write_bytes

FORMATS = {"png16+npy": (".png", ".npy"), "png16": (".png",), "npy": (".npy",)}


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


def save_depth(depth: np.ndarray, folder, prefix: str, formats: str = "png16+npy", start: int = 1) -> list:
    """Write one (H, W) depth map as ``folder/prefix_NNNNN.png`` / ``.npy`` with the first number from ``start`` that
    no file of either format holds; returns the written paths.

    Crash-safe (models.publish): each file is written complete under a hidden temporary name, then hard-linked to
    its numbered name; the link fails when another process took the number, and the next one is tried."""
    if formats not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {formats!r}")
    if depth.ndim != 2 or 0 in depth.shape:
        raise ValueError(f"depth: expected one (H, W) map, got shape {depth.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffixes = FORMATS[formats]
    temps = {}
    try:
        for suffix in suffixes:
            temps[suffix] = temporary_name(folder, prefix + suffix)
            write_bytes(temps[suffix], lambda file, suffix=suffix: write_depth(file, depth, suffix))
        counter = start
        while True:
            finals = {suffix: folder / f"{prefix}_{counter:05}{suffix}" for suffix in suffixes}
            if claim(temps, finals):
                fsync_path(folder)
                return list(finals.values())
            counter += 1
    finally:
        for temp in temps.values():
            remove(temp)


def write_depth(file, depth: np.ndarray, suffix: str):
    if suffix == ".png":
        image, info = depth_png16(depth)
        image.save(file, format="PNG", pnginfo=info)
    else:
        np.save(file, depth.astype(np.float32))


def claim(temps: dict, finals: dict) -> bool:
    """Publish every temporary file under its final name (same suffix), or none (False) when one name is taken."""
    if any(os.path.lexists(path) for path in finals.values()):
        return False
    published = []
    for suffix, final in finals.items():
        try:
            publish_file(temps[suffix], final)
        except FileExistsError:  # another process took this number meanwhile (another format): give ours back
            for path in published:
                remove(path)
            return False
        published.append(final)
    return True


def save_depth_maps(output_dir, filename_prefix: str, depths, formats: str = "png16+npy") -> list:
    """Write (H, W) depth maps under ``output_dir`` as ``filename_prefix_00001.png``… (``filename_prefix`` is checked
    by models.output_paths: relative, inside the output folder); returns the written paths. A failure (disk full,
    read-only) raises ``SaveError`` naming ``filename_prefix``, the folder, the cause and the maps already written."""
    if formats not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {formats!r}")
    folder, prefix = output_prefix(output_dir, filename_prefix, len("_00001") + max(len(s) for s in FORMATS[formats]))
    written = []
    for n, depth in enumerate(depths, start=1):
        try:
            written += save_depth(depth, folder, prefix, formats, next_number(written))
        except OSError as e:
            done = f"depth map {n} of {len(depths)}" + (
                f" ({len(written)} files of the maps before it were written, up to {written[-1].name})" if written else "")
            raise save_error(e, "filename_prefix", done, folder) from e
    return written


def next_number(written: list) -> int:
    return int(written[-1].name.rsplit("_", 1)[1].split(".")[0]) + 1 if written else 1
