"""SimpleTuner: the ``multidatabackend.json`` of a PerSAM-assisted DreamBooth dataset (``--data_backend_config``).

SimpleTuner's local backend walks ``instance_data_dir`` recursively, so the image dataset (``images/``: photos and
their ``NAME.txt`` captions) and the mask dataset (``masks/``, beside it, not inside) each hold only their own files.
A mask is found by replacing the image dataset's folder with the mask dataset's in the photo's path: same file name.

Bucketing: with ``resolution_type "pixel_area"`` SimpleTuner scales every photo to about ``resolution``² pixels
(small photos UP too; OneTrainer does the same, only kohya with ``bucket_no_upscale`` never upscales) and then trims
it to its bucket's size even with ``"crop": false``. The photo is trimmed when its latents are cached, the mask
when a batch is collated: each draws its own offset under the default ``crop_style "random"``, so the mask would
lie shifted against its photo (issue 19: up to ~40 px). ``"crop_style": "center"`` on both entries makes both
trims the same centred window.

Dataset ids are keys of one SimpleTuner config (and name its cache files): each pack dataset gets its own, the
folder name plus a short hash of the folder's path, and its own text-embed cache named by the image dataset
(``"text_embeds"``) and not marked ``"default"`` (SimpleTuner refuses two defaults and makes the first one the
default when none is): the entries of several pack datasets can be concatenated into one config.

Repeats: SimpleTuner shows each photo ``repeats + 1`` times per epoch (its discovery metadata backend's ``__len__``:
``len(bucket) × (repeats + 1)``; its docs tell kohya users to subtract one), so "each photo seen R times per epoch" is
written as ``repeats = R − 1``.

Class images: a fourth entry, an image dataset with ``is_regularisation_data`` on the class folder (captions from its
text files), no mask, the same text-embed cache. Its repeats give at least as many class samples per epoch as the
photos get (R × photos), ``max_num_samples`` cuts a larger class folder to that many.
"""

import hashlib
import math
import re

CROP_STYLE = "center"  # the same deterministic trim for the photo (VAE cache) and its mask (collate)


def dataset_id(folder) -> str:
    """``persam-<folder name>-<8 hex of the absolute path>``: unique per dataset folder, safe in file names."""
    path = folder.as_posix() if hasattr(folder, "as_posix") else str(folder)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.rstrip("/").rsplit("/", 1)[-1]).strip("-.")[:40] or "dataset"
    return f"persam-{name}-{hashlib.sha256(path.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def simpletuner_repeats(times_per_epoch: int) -> int:
    """SimpleTuner's ``repeats`` for a photo seen ``times_per_epoch`` times per epoch."""
    return times_per_epoch - 1


def multidatabackend(dataset: str, images_dir: str, masks_dir: str, cache_dir: str, resolution: int,
                     repeats: int = 10, count: int = 1, class_dir: str = None, class_count: int = 0) -> list:
    """The three backends (image + linked ``conditioning_type "mask"`` dataset + text-embed cache) of the dataset
    with id ``dataset`` (see ``dataset_id``), absolute paths; each of the ``count`` photos seen ``repeats`` times
    per epoch. With ``class_dir``, a fourth: the ``class_count`` class images as regularisation data."""
    common = {"type": "local", "resolution": resolution, "resolution_type": "pixel_area", "crop": False,
              "crop_style": CROP_STYLE, "minimum_image_size": 0}
    masks_id, text_id = f"{dataset}-masks", f"{dataset}-text-embeds"
    backends = [
        {"id": dataset, "dataset_type": "image", **common, "instance_data_dir": images_dir,
         "conditioning_data": masks_id, "caption_strategy": "textfile", "metadata_backend": "discovery",
         "cache_dir_vae": f"{cache_dir}/vae", "text_embeds": text_id, "repeats": simpletuner_repeats(repeats)},
        {"id": masks_id, "dataset_type": "conditioning", "conditioning_type": "mask", **common,
         "instance_data_dir": masks_dir},
        # not "default": SimpleTuner allows one default and makes the first text-embed backend it when none is
        {"id": text_id, "dataset_type": "text_embeds", "type": "local", "cache_dir": f"{cache_dir}/text"},
    ]
    if class_dir:
        samples = repeats * count  # as many class samples per epoch as the photos get (kohya's is_reg rule)
        regularisation = {"id": f"{dataset}-class", "dataset_type": "image", **common, "instance_data_dir": class_dir,
                          "caption_strategy": "textfile", "metadata_backend": "discovery",
                          "cache_dir_vae": f"{cache_dir}/vae-class", "text_embeds": text_id,
                          "is_regularisation_data": True,
                          "repeats": max(0, math.ceil(samples / class_count) - 1)}
        if class_count > samples:
            regularisation["max_num_samples"] = samples
        backends.append(regularisation)
    return backends
