"""ComfyUI nodes for PerSAM-assisted DreamBooth: training masks, and a dataset folder the trainers read."""

import os

import folder_paths

from ..models.dreambooth import export_dataset, latent_loss_mask, training_mask
from .persam_nodes import segment_batch


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

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "reference": ("PERSAM_REF",),
                "images": ("IMAGE", {"tooltip": "the training photos"}),
                "grow_pixels": ("INT", {"default": 4, "min": 0, "max": 256, "tooltip": "dilation; the loss acts at 1/8 resolution"}),
                "feather_pixels": ("INT", {"default": 0, "min": 0, "max": 256}),
                "fill_holes": ("BOOLEAN", {"default": True}),
                "vae_factor": ("INT", {"default": 8, "min": 1, "max": 64, "tooltip": "latent downsampling of the loss mask"}),
            }
        }

    def masks(self, reference, images, grow_pixels, feather_pixels, fill_holes, vae_factor):
        found = segment_batch(reference, images).masks
        masks = training_mask(found, grow_pixels, feather_pixels, fill_holes)
        preview = images * (0.25 + 0.75 * masks[..., None])
        return (masks, latent_loss_mask(masks, vae_factor), preview)


class SaveDreamBoothDataset:
    DESCRIPTION = (
        "Writes the photos and masks as a DreamBooth dataset into a new folder under the output directory: RGBA "
        "images (kohya alpha_mask), masks/ (kohya masked_loss, SimpleTuner), NAME-masklabel.png (OneTrainer), "
        "captions, dataset.toml and a README.txt. An existing non-empty folder is never touched: a numbered one is made."
    )
    CATEGORY = "PerSAM"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("folder",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "masks": ("MASK",),
                "folder": ("STRING", {"default": "dreambooth/subject", "tooltip": "relative to the output directory"}),
                "caption": ("STRING", {"default": "a photo of sks dog", "tooltip": "the instance prompt"}),
                "onetrainer_masklabels": ("BOOLEAN", {"default": True, "tooltip": "also write NAME-masklabel.png (kohya would read them as images too)"}),
            }
        }

    def save(self, images, masks, folder, caption, onetrainer_masklabels):
        written = export_dataset(
            folder_paths.get_output_directory(), folder, images.cpu().numpy(), masks.cpu().numpy(), caption,
            onetrainer_masklabels,
        )
        relative = os.path.relpath(written, folder_paths.get_output_directory())
        return {"ui": {"text": [relative]}, "result": (str(written),)}


NODE_CLASS_MAPPINGS = {"PersamDreamBoothMask": DreamBoothMask, "PersamSaveDreamBoothDataset": SaveDreamBoothDataset}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PersamDreamBoothMask": "PerSAM-assisted DreamBooth Mask",
    "PersamSaveDreamBoothDataset": "Save DreamBooth Dataset",
}
