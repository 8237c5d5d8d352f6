"""Best-effort OpenPose keypoints from DICEPTION's pose answers (rendered skeletons).

Assumes the OpenPose / ControlNet rendering: 18 body joints drawn as discs in 18 fixed saturated colours,
limbs in darker (60 %) colours, on black. Each joint is the centroid of a blob of its colour; people are
grouped by the nearest neck (joint 1). This is a heuristic: joints hidden under other strokes are missed
(confidence 0), and generated skeletons may deviate from the palette.
"""

import numpy as np
import torch
from scipy import ndimage

from .validation import check_rgb

JOINT_COLOURS = np.array([
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
    [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
    [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
]) / 255
NECK = 1


def joint_blobs(rgb: np.ndarray, colour: np.ndarray, tolerance: float, min_area: int):
    close = np.abs(rgb - colour).max(-1) < tolerance
    labels, count = ndimage.label(close)
    blobs = []
    for c in range(1, count + 1):
        ys, xs = np.nonzero(labels == c)
        if len(xs) >= min_area:
            blobs.append((float(xs.mean()), float(ys.mean()), len(xs)))
    return sorted(blobs, key=lambda b: -b[2])


def decode_keypoints(image: torch.Tensor, tolerance: float = 0.16, min_area: int = 4) -> dict:
    """One (H, W, 3) pose answer → OpenPose JSON ``{"canvas_width", "canvas_height", "people": [{"pose_keypoints_2d"}]}``
    with 18 joints (x, y, confidence) per person; missing joints are (0, 0, 0)."""
    rgb = check_rgb(image)[0].clamp(0, 1).cpu().numpy()
    h, w, _ = rgb.shape
    blobs = [joint_blobs(rgb, colour, tolerance, min_area) for colour in JOINT_COLOURS]
    necks = blobs[NECK] or ([max((b for joint in blobs for b in joint), key=lambda b: b[2])] if any(blobs) else [])
    people = [[(0.0, 0.0, 0.0)] * len(JOINT_COLOURS) for _ in necks]
    for j, candidates in enumerate(blobs):
        taken = set()
        for x, y, area in candidates:
            owner = min(range(len(necks)), key=lambda p: (necks[p][0] - x) ** 2 + (necks[p][1] - y) ** 2)
            if owner in taken:
                continue
            taken.add(owner)
            people[owner][j] = (x, y, min(1.0, area / (np.pi * 16)))
    return {
        "canvas_width": w,
        "canvas_height": h,
        "people": [{"pose_keypoints_2d": [v for joint in person for v in joint]} for person in people],
    }
