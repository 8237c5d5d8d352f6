"""ComfyUI nodes for PerSAM-assisted DreamBooth: training masks, and a dataset folder the trainers read."""

import os

import torch

import folder_paths

from ..models.dreambooth import RESOLUTIONS, export_dataset, latent_loss_mask, training_mask
from ..models.rows import row_chunks
from .persam_nodes import segment_batch

RESOLUTION_CHOICES = {f"{r} ({models})": r for r, models in zip(RESOLUTIONS, ("SDXL, SD3, Flux", "SD2", "SD1.5"))}
DEFAULT_RESOLUTION = next(iter(RESOLUTION_CHOICES))


class DreamBoothMask:
    DESCRIPTION = (
        "PerSAM-assisted DreamBooth (PerSAM paper, 3.4): segments the subject of a PerSAM Reference in each training "
        "photo, so the diffusion loss ignores the background. Outputs the foreground masks (grown, hole-filled, "
        "feathered), the loss masks at latent resolution, and a preview of the kept regions. A photo where "
        "PerSAM finds nothing gets an all-zero mask and a warning in the log."
    )
    CATEGORY = "PerSAM"
    FUNCTION = "masks"
    RETURN_TYPES = ("MASK", "MASK", "IMAGE")
    RETURN_NAMES = ("masks", "loss_masks", "preview")
    OUTPUT_TOOLTIPS = (
        "the subject masks at photo size (white = subject), for Save DreamBooth Dataset",
        "the masks area-downsampled by the VAE factor: the weights of the latent diffusion loss",
        "the photos with the background darkened",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "reference": ("PERSAM_REF", {"tooltip": "the subject, from PerSAM Reference"}),
                "images": ("IMAGE", {"tooltip": "the training photos"}),
                "grow_pixels": ("INT", {"default": 4, "min": 0, "max": 256, "tooltip": "dilation; the loss acts at 1/8 resolution"}),
                "feather_pixels": ("INT", {"default": 0, "min": 0, "max": 256, "tooltip": "soften the mask edge over this many pixels (0: hard edge)"}),
                "fill_holes": ("BOOLEAN", {"default": True, "tooltip": "fill holes inside the subject mask, so the loss covers the whole subject"}),
                "vae_factor": ("INT", {"default": 8, "min": 1, "max": 64, "tooltip": "latent downsampling of the loss mask"}),
            }
        }

    def masks(self, reference, images, grow_pixels, feather_pixels, fill_holes, vae_factor):
        found = segment_batch(reference, images).masks
        masks = training_mask(found, grow_pixels, feather_pixels, fill_holes)
        preview = torch.empty_like(images)  # the kept regions, a few rows at a time (no full-size temporaries)
        for i in range(images.shape[0]):
            for rows in row_chunks(images.shape[1]):
                preview[i, rows] = images[i, rows] * (0.25 + 0.75 * masks[i, rows, :, None])
        return (masks, latent_loss_mask(masks, vae_factor), preview)


class SaveDreamBoothDataset:
    DESCRIPTION = (
        "Writes the photos and masks as a DreamBooth dataset into a new folder under the output directory, in a "
        "layout kohya sd-scripts, OneTrainer and SimpleTuner load as written: images/ (RGBA photos, alpha = mask, "
        "and captions), masks/ (white = subject), onetrainer/ (photos, NAME-masklabel.png, captions), plus "
        "dataset.toml (kohya), multidatabackend.json (SimpleTuner), onetrainer_concepts.json and README.txt. "
        "An existing non-empty folder is never touched: a numbered one is made."
    )
    CATEGORY = "PerSAM"
    FUNCTION = "save"
    OUTPUT_NODE = True
    INPUT_IS_LIST = True  # photos of different sizes arrive as a list (e.g. from an image-list loader)
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("folder",)
    OUTPUT_TOOLTIPS = ("the dataset folder that was written",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "the training photos: a batch, or a list of photos of different sizes"}),
                "masks": ("MASK", {"tooltip": "one mask per photo, white = subject (PerSAM-assisted DreamBooth Mask)"}),
                "folder": ("STRING", {"default": "dreambooth/subject", "tooltip": "relative to the output directory; a taken folder gets _001, _002 …"}),
                "caption": ("STRING", {"default": "a photo of sks dog", "tooltip": "the instance prompt, written on one line beside every photo"}),
                "onetrainer_masklabels": ("BOOLEAN", {"default": True, "tooltip": "also write the onetrainer/ folder (photos + NAME-masklabel.png + captions) and onetrainer_concepts.json"}),
            },
            "optional": {
                "resolution": (list(RESOLUTION_CHOICES), {"default": DEFAULT_RESOLUTION, "tooltip": "the model's native training size for kohya's dataset.toml and SimpleTuner: 1024 for SDXL, SD3 and Flux, 768 for SD2, 512 for SD1.5 (buckets keep each photo's aspect ratio; kohya never upscales, SimpleTuner and OneTrainer scale each photo to about this size squared)"}),
            },
        }

    def save(self, images, masks, folder, caption, onetrainer_masklabels, resolution=(DEFAULT_RESOLUTION,)):
        photos = [photo.cpu().numpy() for batch in images for photo in batch]
        subject = [mask.cpu().numpy() for batch in masks for mask in batch.reshape(-1, *batch.shape[-2:])]
        folder, caption, masklabels, resolution = (one_value(v, n) for v, n in (
            (folder, "folder"), (caption, "caption"), (onetrainer_masklabels, "onetrainer_masklabels"), (resolution, "resolution")))
        if resolution not in RESOLUTION_CHOICES:
            raise ValueError(f"resolution: expected one of {list(RESOLUTION_CHOICES)}, got {resolution!r}")
        written = export_dataset(
            folder_paths.get_output_directory(), folder, photos, subject, caption, masklabels, RESOLUTION_CHOICES[resolution],
        )
        relative = os.path.relpath(written, os.path.realpath(folder_paths.get_output_directory()))
        return {"ui": {"text": [relative]}, "result": (str(written),)}


def one_value(values: list, name: str):
    """INPUT_IS_LIST hands every input as a list; a setting must have one value."""
    if len(set(map(repr, values))) != 1:
        raise ValueError(f"{name}: expected one value for the whole dataset, got {len(values)} different ones")
    return values[0]


NODE_CLASS_MAPPINGS = {"PersamDreamBoothMask": DreamBoothMask, "PersamSaveDreamBoothDataset": SaveDreamBoothDataset}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PersamDreamBoothMask": "PerSAM-assisted DreamBooth Mask",
    "PersamSaveDreamBoothDataset": "Save DreamBooth Dataset",
}
