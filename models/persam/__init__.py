"""PerSAM / PerSAM-F (arXiv 2305.03048): Segment Anything personalised from one image and mask (or several, and
negative examples: ``make_reference_set``).

Entry points of the operations, each doing all of its checking (the nodes and the collection labeller call these):
``build_reference`` (PerSAM Reference) and ``frames.segment_frames`` (PerSAM Segment)."""

import torch

from .cascade import Segmentation, persam_f_segment, persam_segment
from .features import ImageFeatures, as_uint8_image, as_uint8_mask, encode_image, encode_images
from .reference import Reference, build_reference, make_reference, make_reference_set
from .sam_loading import load_sam


def segment(sam, reference: Reference, image, features=None, exclude=None, previous_box=None) -> Segmentation:
    """Segment the reference's subject in one image ((H, W, 3) float 0..1 or uint8)."""
    features = features if features is not None else encode_image(sam, image)
    if reference.mode == "persam_f":
        return persam_f_segment(sam, features, reference.embedding, reference.weights, exclude, previous_box,
                                reference.negatives)
    return persam_segment(sam, features, reference.embedding, exclude, previous_box, reference.negatives)


def segment_instances(sam, reference: Reference, image, max_instances=1, overlap_stop=0.5, features=None, previous_boxes=()) -> list:
    """Several instances of the subject, as persam_f_multi_obj.py intends: after each found instance its
    pixels are excluded from the location prior and PerSAM runs again; it stops at ``max_instances``, when
    nothing is found, or when a new mask lies mostly (``overlap_stop`` of its area) on earlier ones.
    Unlike the official script, the image is encoded once, every instance is kept (not only the last)
    and overlap is measured on boolean masks. Returns the list of Segmentations (at least one).
    ``previous_boxes``: video, the boxes of the previous frame's instances, k-th for the k-th search."""
    features = features if features is not None else encode_image(sam, image)
    height, width = features.original_size
    cell = max(1, round(max(height, width) / features.features.shape[-1]))  # one feature cell, in pixels
    found, union, exclude = [], None, torch.zeros(height, width, dtype=torch.bool)
    for k in range(max(1, max_instances)):
        previous_box = previous_boxes[k] if k < len(previous_boxes) else None
        result = segment(sam, reference, image, features, exclude, previous_box)
        if found and (not result.found or float((result.mask & union).sum()) >= overlap_stop * float(result.mask.sum())):
            break
        found.append(result)
        union = result.mask.cpu() if union is None else union | result.mask.cpu()
        exclude = union.clone()  # and the points already used: a mask may miss the point that prompted it
        for r in found:
            px, py = r.points[0].tolist()
            exclude[max(0, py - cell) : py + cell + 1, max(0, px - cell) : px + cell + 1] = True
        if not result.found:
            break
    return found
