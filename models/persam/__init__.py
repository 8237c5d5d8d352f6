"""PerSAM / PerSAM-F (arXiv 2305.03048): Segment Anything personalised from one image and mask."""

from .cascade import Segmentation, persam_f_segment, persam_segment
from .features import ImageFeatures, as_uint8_image, as_uint8_mask, encode_image
from .reference import Reference, make_reference
from .sam_loading import load_sam


def segment(sam, reference: Reference, image) -> Segmentation:
    """Segment the reference's subject in one image ((H, W, 3) float 0..1 or uint8)."""
    features = encode_image(sam, image)
    if reference.mode == "persam_f":
        return persam_f_segment(sam, features, reference.embedding, reference.weights)
    return persam_segment(sam, features, reference.embedding)
