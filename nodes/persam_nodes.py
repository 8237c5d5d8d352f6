"""ComfyUI nodes for PerSAM: SAM Loader, PerSAM Reference, PerSAM Segment."""

import json
import logging

import torch

from ..models.persam import encode_image, load_sam, make_reference
from ..models.persam.frames import segment_frames
from ..models.persam.predict import predict
from . import comfy_adapter, model_folders

log = logging.getLogger(__name__)


class SamModel:
    """A SAM wrapped for ComfyUI's model management."""

    def __init__(self, sam):
        self.sam = sam
        self.patcher = comfy_adapter.managed([sam])

    def ready(self):
        comfy_adapter.load([self.patcher])
        return self.sam


class PersamReference:
    """What flows along a PERSAM_REF link: the SAM and the personalised reference."""

    def __init__(self, model: SamModel, reference):
        self.model, self.reference = model, reference


class SamLoader:
    DESCRIPTION = "Loads a Segment Anything checkpoint (vit_b / vit_l / vit_h, .pth or .safetensors) from models/sams."
    CATEGORY = "PerSAM"
    FUNCTION = "load"
    RETURN_TYPES = ("PERSAM_SAM",)
    RETURN_NAMES = ("sam",)
    OUTPUT_TOOLTIPS = ("the Segment Anything model, for PerSAM Reference",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"checkpoint": (model_folders.weight_files("sams"), {"tooltip": "e.g. sam_vit_h_4b8939.pth in models/sams"})}}

    def load(self, checkpoint):
        return (SamModel(load_sam(model_folders.find("sams", checkpoint))),)


def parse_box(text: str, width: int, height: int):
    values = [v for v in text.replace(";", ",").split(",") if v.strip()]
    try:
        x0, y0, x1, y1 = (float(v) for v in values)
    except ValueError:
        raise ValueError(f"box: expected 'x0, y0, x1, y1' in pixels, got {text!r}") from None
    if not (0 <= x0 < x1 <= width - 1 and 0 <= y0 < y1 <= height - 1):
        raise ValueError(f"box: ({x0:g}, {y0:g}, {x1:g}, {y1:g}) must satisfy 0 ≤ x0 < x1 < {width}, 0 ≤ y0 < y1 < {height}")
    return torch.tensor([x0, y0, x1, y1])


class PersamReferenceNode:
    DESCRIPTION = (
        "Personalises SAM from ONE reference image and a mask of the subject (ComfyUI's mask editor or any mask "
        "node; pixels ≥ 0.5 count), or a box around it. PerSAM is training-free; PerSAM-F fits 2 scale-aware "
        "weights in a few seconds (one decoder pass, 1000 optimiser steps)."
    )
    CATEGORY = "PerSAM"
    FUNCTION = "reference"
    RETURN_TYPES = ("PERSAM_REF",)
    RETURN_NAMES = ("reference",)
    OUTPUT_TOOLTIPS = ("the personalised subject (target embedding, features, PerSAM-F weights), for PerSAM Segment and the DreamBooth mask",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "sam": ("PERSAM_SAM", {"tooltip": "from SAM Loader (PerSAM)"}),
                "image": ("IMAGE", {"tooltip": "the reference photo (the first of a batch is used)"}),
                "fine_tune": ("BOOLEAN", {"default": False, "tooltip": "PerSAM-F: learn the scale-aware mask weights"}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "the subject in the reference image, same size as the image"}),
                "box": ("STRING", {"default": "", "tooltip": "instead of a mask: 'x0, y0, x1, y1' in pixels; SAM segments the box"}),
                "iterations": ("INT", {"default": 1000, "min": 1, "max": 10000, "tooltip": "PerSAM-F optimiser steps"}),
            },
        }

    def reference(self, sam, image, fine_tune, mask=None, box="", iterations=1000):
        if image.ndim != 4 or 0 in image.shape:
            raise ValueError(f"image: expected a non-empty IMAGE, got shape {tuple(image.shape)}")
        model = sam.ready()
        picture, features = image[0], None
        if mask is None or not bool((mask[0] >= 0.5).any()):
            if not box.strip():
                raise ValueError("mask: the reference mask is empty (or missing) and no box is given; paint the subject or give a box")
            features = encode_image(model, picture)
            found = predict(model, features, None, None, box=parse_box(box, picture.shape[1], picture.shape[0]))
            mask = found.mask(found.best()).float()[None].cpu()
        progress = comfy_adapter.Progress(iterations, min_interval=0.1)  # interrupt checked every iteration
        reference = make_reference(
            model, picture, mask[0], fine_tune=fine_tune, iterations=iterations, features=features, callback=progress,
        )
        return (PersamReference(sam, reference),)


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
    if images.ndim != 4 or 0 in images.shape:
        raise ValueError(f"images: expected a non-empty IMAGE batch, got shape {tuple(images.shape)}")
    progress = comfy_adapter.Progress(images.shape[0])
    result = segment_frames(reference.model.ready(), reference.reference, images, batch_size, max_instances,
                            overlap_stop, video, callback=progress)
    for i in result.empty_frames:
        log.warning("PerSAM found nothing in image %d of the batch; its mask is all zero", i)
    return result


def overlay(images: torch.Tensor, masks: torch.Tensor, colour=(1.0, 0.2, 0.2), alpha=0.5, rows: int = 512) -> torch.Tensor:
    """The images with their masks tinted (a preview), computed ``rows`` image rows at a time: no full-size
    temporaries besides the output."""
    tint = torch.tensor(colour, dtype=images.dtype, device=images.device)
    out = torch.empty_like(images)
    for i in range(images.shape[0]):
        for top in range(0, images.shape[1], rows):
            m = masks[i, top : top + rows, :, None].to(images.dtype) * alpha
            out[i, top : top + rows] = images[i, top : top + rows] * (1 - m) + tint * m
    return out


NODE_CLASS_MAPPINGS = {"PersamSamLoader": SamLoader, "PersamReference": PersamReferenceNode, "PersamSegment": PersamSegment}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PersamSamLoader": "SAM Loader (PerSAM)",
    "PersamReference": "PerSAM Reference",
    "PersamSegment": "PerSAM Segment",
}
