"""SimpleTuner: the ``multidatabackend.json`` of a PerSAM-assisted DreamBooth dataset (``--data_backend_config``).

SimpleTuner's local backend walks ``instance_data_dir`` recursively, so the image dataset (``images/``: photos and
their ``NAME.txt`` captions) and the mask dataset (``masks/``, beside it, not inside) each hold only their own files.
A mask is found by replacing the image dataset's folder with the mask dataset's in the photo's path: same file name.
"""

IMAGES_ID, MASKS_ID, TEXT_ID = "persam-dreambooth", "persam-dreambooth-masks", "persam-dreambooth-text-embeds"


def multidatabackend(images_dir: str, masks_dir: str, cache_dir: str, resolution: int, repeats: int = 10) -> list:
    """The three backends (image + linked ``conditioning_type "mask"`` dataset + text-embed cache), absolute paths."""
    common = {"type": "local", "resolution": resolution, "resolution_type": "pixel_area", "crop": False,
              "minimum_image_size": 0}
    return [
        {"id": IMAGES_ID, "dataset_type": "image", **common, "instance_data_dir": images_dir,
         "conditioning_data": MASKS_ID, "caption_strategy": "textfile", "metadata_backend": "discovery",
         "cache_dir_vae": f"{cache_dir}/vae", "repeats": repeats},
        {"id": MASKS_ID, "dataset_type": "conditioning", "conditioning_type": "mask", **common,
         "instance_data_dir": masks_dir},
        {"id": TEXT_ID, "dataset_type": "text_embeds", "default": True, "type": "local", "cache_dir": f"{cache_dir}/text"},
    ]
