"""ComfyUI nodes for PerSAM: SAM Loader, PerSAM Reference, PerSAM Segment."""

import json
import logging

from ..models.rows import overlay
from . import model_downloads, model_folders
from .comfy_host import ComfyHost

log = logging.getLogger(__name__)


class SamModel:
    """What flows along a PERSAM_SAM link: a SAM and its host (``ComfyHost``: ComfyUI's model management, progress
    bar thinned to 10 updates a second for PerSAM-F's 1000 steps, interrupt)."""

    def __init__(self, sam):
        self.sam = sam
        self.host = ComfyHost(min_interval=0.1)


class PersamReference:
    """What flows along a PERSAM_REF link: the SAM and the personalised reference."""

    def __init__(self, model: SamModel, reference):
        self.model, self.reference = model, reference


class SamLoader:
    DESCRIPTION = (
        "Loads a Segment Anything checkpoint (vit_b / vit_l / vit_h, .pth or .safetensors) from models/sams; Meta's "
        "three checkpoints are listed even while absent and downloaded on first use (download)."
    )
    CATEGORY = "PerSAM"
    FUNCTION = "load"
    RETURN_TYPES = ("PERSAM_SAM",)
    RETURN_NAMES = ("sam",)
    OUTPUT_TOOLTIPS = ("the Segment Anything model, for PerSAM Reference",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"checkpoint": (model_downloads.with_known(model_folders.weight_files("sams"), "sams"),
                                        {"tooltip": "e.g. sam_vit_h_4b8939.pth in models/sams"})},
            "optional": {"download": model_downloads.DOWNLOAD_INPUT},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, checkpoint):
        """A listed file, or a known one that is absent (downloaded when the node runs)."""
        return model_downloads.validate("checkpoint", checkpoint, cls.INPUT_TYPES()["required"]["checkpoint"][0], "sams")

    def load(self, checkpoint, download=True):
        from ..models.persam import load_sam  # segment_anything: imported when a node first runs, not at start-up

        return (SamModel(load_sam(model_downloads.fetch("sams", checkpoint, download, "checkpoint"))),)


class PersamReferenceNode:
    DESCRIPTION = (
        "Personalises SAM from reference images of the subject, each with a mask (ComfyUI's mask editor or any "
        "mask node; pixels ≥ 0.5 count) or a box: one image (the official one-shot PerSAM), an IMAGE batch with a "
        "MASK batch of the same length, or a list of images of different sizes with a list of masks (the i-th "
        "mask belongs to the i-th image); image_2 (+ mask_2) adds references from a second Load Image. Optional "
        "negative images + masks show a look-alike that must NOT be selected. PerSAM is training-free; PerSAM-F "
        "fits 2 scale-aware weights on all references (one decoder pass per reference, 1000 optimiser steps)."
    )
    CATEGORY = "PerSAM"
    FUNCTION = "reference"
    INPUT_IS_LIST = True  # a list of images of different sizes (and of masks) arrives whole
    RETURN_TYPES = ("PERSAM_REF",)
    RETURN_NAMES = ("reference",)
    OUTPUT_TOOLTIPS = ("the personalised subject (target embeddings, negatives, PerSAM-F weights), for PerSAM Segment and the DreamBooth mask",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "the reference photo(s): one image, a batch, or a list of different sizes"}),
                "fine_tune": ("BOOLEAN", {"default": False, "tooltip": "PerSAM-F: learn the scale-aware mask weights"}),
            },
            "optional": {
                "sam": ("PERSAM_SAM", {"tooltip": "from SAM Loader (PerSAM); or connect sam_model instead"}),
                "mask": ("MASK", {"tooltip": "the subject in each reference image: one mask per image, same sizes, same order"}),
                "box": ("STRING", {"default": "", "multiline": True, "tooltip": "instead of a mask: 'x0, y0, x1, y1' in pixels, one line per reference image in order (image's images, then image_2's; an empty line: use that image's mask); SAM segments the box"}),
                "iterations": ("INT", {"default": 1000, "min": 1, "max": 10000, "tooltip": "PerSAM-F optimiser steps"}),
                "sam_model": ("SAM_MODEL", {"tooltip": "instead of sam: a Segment Anything ViT-B/L/H from another pack's SAM loader (e.g. SAMModelLoader (segment anything)); its weights are shared, not loaded again"}),
                "negative_images": ("IMAGE", {"tooltip": "optional: photos showing a look-alike that must NOT be selected (may be the reference photos themselves)"}),
                "negative_masks": ("MASK", {"tooltip": "the look-alike in each negative image, one mask per image; must not cover a reference mask of the same photo"}),
                "image_2": ("IMAGE", {"tooltip": "more references from a second Load Image (e.g. another look of the subject; any size): they come after image's, in box lines too"}),
                "mask_2": ("MASK", {"tooltip": "the subject in each image_2 image (or leave it out and give their box lines)"}),
            },
        }

    def reference(self, image, fine_tune, sam=None, mask=None, box=None, iterations=None, sam_model=None,
                  negative_images=None, negative_masks=None, image_2=None, mask_2=None):
        from ..models.persam import build_reference

        model = reference_sam(sam, sam_model)
        images, masks = references(image, mask, image_2, mask_2)
        negatives = [flatten(n, v) if v is not None else None for n, v in
                     (("negative_images", negative_images), ("negative_masks", negative_masks))]
        reference = build_reference(
            model.sam, images, masks, first(box, ""), negatives[0], negatives[1], fine_tune=first(fine_tune, False),
            iterations=first(iterations, 1000), host=model.host,
        )
        return (PersamReference(model, reference),)


def references(image, mask, image_2, mask_2):
    """The reference images in order (image's, then image_2's) and their masks (None where a mask input is not
    connected: those images need box lines); each mask input holds one mask per image of its own image input."""
    if image_2 is None:
        if mask_2 is not None:
            raise ValueError("mask_2: it is the mask of image_2's images; connect image_2 too (or connect the mask to mask)")
        return flatten("image", image), flatten("mask", mask) if mask is not None else None
    images, masks = [], []
    for image_name, mask_name, pictures, subjects in (("image", "mask", image, mask), ("image_2", "mask_2", image_2, mask_2)):
        pictures = flatten(image_name, pictures)
        subjects = flatten(mask_name, subjects) if subjects is not None else [None] * len(pictures)
        if len(subjects) != len(pictures):
            raise ValueError(
                f"{mask_name}: {len(subjects)} mask(s) for {len(pictures)} image(s) of {image_name}; give one mask per "
                f"image of {image_name}, in the same order (or leave {mask_name} out and give box lines)"
            )
        images += pictures
        masks += subjects
    return images, masks


def first(value, default):
    """A widget's value (a one-element list under INPUT_IS_LIST), or ``default`` when not given."""
    if isinstance(value, list):
        value = value[0] if value else None
    return default if value is None else value


def reference_sam(sam, sam_model) -> SamModel:
    """Exactly one of ``sam`` (PERSAM_SAM) and ``sam_model`` (another pack's SAM_MODEL, adopted once per object)."""
    sam, sam_model = first(sam, None), first(sam_model, None)
    if (sam is None) == (sam_model is None):
        raise ValueError(
            "sam: connect either sam (from SAM Loader (PerSAM)) or sam_model (a SAM_MODEL from another pack's SAM "
            "loader), " + ("not both" if sam is not None else "one of them is required")
        )
    if sam is not None:
        return sam
    adopted = ADOPTED.get(id(sam_model))
    if adopted is None or adopted[0] is not sam_model:
        from ..models.persam.sam_loading import adopt_sam

        adopted = (sam_model, SamModel(adopt_sam(sam_model, "sam_model")))
        ADOPTED.clear()  # keep only the latest: the other pack owns the weights, and may drop them
        ADOPTED[id(sam_model)] = adopted
    return adopted[1]


ADOPTED = {}  # id(other pack's Sam) → (that Sam, our SamModel sharing its weights)


def flatten(name: str, values) -> list:
    """A list of IMAGE/MASK batches (INPUT_IS_LIST) → one (H, W[, 3]) tensor per image, in order."""
    items = []
    for batch in values if isinstance(values, list) else [values]:
        if batch is None:
            continue
        if batch.ndim == 2:
            batch = batch[None]
        items += list(batch)
    if not items:
        raise ValueError(f"{name}: expected at least one image, got an empty list")
    return items


class PersamSegment:
    DESCRIPTION = (
        "Segments the reference's subject in every image of a batch (or video frames): location prior, "
        "target-guided attention, target-semantic prompting, cascaded refinement. Outputs the masks (union of the "
        "instances per image), each image's positive points as a JSON list of KJNodes lists (for Perceive Task's "
        "points), a preview, and one mask per instance with its image and its image index."
    )
    CATEGORY = "PerSAM"
    FUNCTION = "segment"
    RETURN_TYPES = ("MASK", "STRING", "IMAGE", "MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("masks", "points", "preview", "instance_masks", "instance_images", "instance_index")
    OUTPUT_TOOLTIPS = (
        "one mask per image: the union of the instances found (empty where nothing was found)",
        "each image's positive points as JSON, one KJNodes list per image (feeds Perceive Task's points)",
        "the images with their masks tinted",
        "one mask per instance found, over all images",
        "for each instance mask, the image it belongs to",
        "for each instance mask, the index of its image in the batch (JSON list)",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "reference": ("PERSAM_REF", {"tooltip": "the subject, from PerSAM Reference"}),
                "images": ("IMAGE", {"tooltip": "the photos or video frames to segment the subject in"}),
            },
            "optional": {
                "max_instances": ("INT", {"default": 1, "min": 1, "max": 16, "tooltip": "find up to this many instances of the subject"}),
                "overlap_stop": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "stop when a new mask lies this much on earlier ones"}),
                "video": ("BOOLEAN", {"default": False, "tooltip": "frames of ONE shot, in order: each instance's box in the previous frame also prompts the next frame (as the official persam_video.py)"}),
                "batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": "images per SAM image-encoder call: larger is faster per image and needs more memory; the masks do not depend on it"}),
            },
        }

    def segment(self, reference, images, max_instances=1, overlap_stop=0.5, video=False, batch_size=4):
        result = segment_batch(reference, images, max_instances, overlap_stop, video, batch_size)
        points = json.dumps([[{"x": x, "y": y} for x, y in frame] for frame in result.points])
        frames = result.instance_frames or [0]
        # the same images in the same order (one instance per image): the input itself, not a full-size copy
        instance_images = images if frames == list(range(images.shape[0])) else images[frames]
        return (result.masks, points, overlay(images, result.masks), result.instance_masks, instance_images,
                json.dumps(result.instance_frames))


def segment_batch(reference: PersamReference, images, max_instances=1, overlap_stop=0.5, video=False, batch_size=4):
    """``segment_frames`` with ComfyUI's progress bar (per image; interrupt between images) and a warning for
    each image where nothing is found."""
    from ..models.persam.frames import segment_frames

    model = reference.model
    result = segment_frames(model.sam, reference.reference, images, batch_size, max_instances, overlap_stop, video,
                            host=model.host)
    for i in result.empty_frames:
        log.warning("PerSAM found nothing in image %d of the batch; its mask is all zero", i)
    return result


NODE_CLASS_MAPPINGS = {"PersamSamLoader": SamLoader, "PersamReference": PersamReferenceNode, "PersamSegment": PersamSegment}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PersamSamLoader": "SAM Loader (PerSAM)",
    "PersamReference": "PerSAM Reference",
    "PersamSegment": "PerSAM Segment",
}
