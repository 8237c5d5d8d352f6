"""PerSAM on an image batch or the frames of one video shot: one answer per frame and per instance."""

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..host import Host
from ..inputs import check_images
from ..points import MAX_POINTS
from . import segment_instances
from .features import encode_images
from .predict import mask_box
from .reference import Reference


@dataclass
class FrameResults:
    masks: torch.Tensor  # (B, H, W) float 0/1: the union of each frame's instances
    points: list  # per frame, the positive points [(x, y), …] (≤ MAX_POINTS), one per instance found
    instance_masks: torch.Tensor  # (N, H, W) float 0/1: one mask per instance found (N ≥ 1; empty mask when none)
    instance_frames: list  # N frame indices, which frame each instance mask belongs to ([] when none)
    empty_frames: list  # frames where nothing was found


def segment_frames(sam, reference: Reference, images, batch_size: int = 4, max_instances: int = 1,
                   overlap_stop: float = 0.5, video: bool = False,
                   callback: Optional[Callable[[int, int], None]] = None, host: Optional[Host] = None) -> FrameResults:
    """Segment the reference's subject in every frame; the SAM image encoder runs ``batch_size`` frames per
    call. ``video``: frames of one shot, in order; each instance's box in the previous frame prompts its
    search in the next (``video.carried_prompt``). The ``host`` prepares the SAM and sees the progress after every
    frame (or ``callback(done, total)`` when given; raise from it to interrupt)."""
    check_images("images", images, channels=3)
    host = host if host is not None else Host()
    progress = callback or host.progress
    host.prepare("sam", [sam])
    total, height, width = images.shape[0], images.shape[1], images.shape[2]
    unions, points, instances, frames, empty = [], [], [], [], []
    previous = []
    for start in range(0, total, batch_size):
        for offset, features in enumerate(encode_images(sam, images[start : start + batch_size], batch_size)):
            i = start + offset
            found = segment_instances(sam, reference, images[i], max_instances, overlap_stop, features,
                                      previous if video else ())
            kept = [r for r in found if r.found]
            if not kept:
                empty.append(i)
            unions.append(torch.stack([r.mask for r in found]).any(0).float().cpu())
            points.append([tuple(int(v) for v in r.points[0].tolist()) for r in found][:MAX_POINTS])
            instances += [r.mask.float().cpu() for r in kept]
            frames += [i] * len(kept)
            previous = [mask_box(r.mask) for r in found]
            progress(i + 1, total)
    instance_masks = torch.stack(instances) if instances else torch.zeros(1, height, width)
    return FrameResults(torch.stack(unions), points, instance_masks, frames, empty)
