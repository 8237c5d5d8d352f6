"""A DreamBooth dataset folder that kohya sd-scripts, OneTrainer and SimpleTuner load as written.

Each trainer reads its own folder, which holds only what it must see (photos ``NAME`` = 0001, 0002, …)::

    images/NAME.png              RGBA: the photo, alpha = mask     kohya (alpha_mask), SimpleTuner images
    images/NAME.txt              the caption                       kohya, SimpleTuner (caption_strategy textfile)
    masks/NAME.png               8-bit grey mask, white = subject  SimpleTuner conditioning_type "mask"
    onetrainer/NAME.png          RGB photo                         OneTrainer concept folder
    onetrainer/NAME-masklabel.png  the mask                        OneTrainer masked training
    onetrainer/NAME.txt          the caption                       OneTrainer prompt source "sample"
    class/NAME.png, NAME.txt     class image (RGB) + class prompt  all three (when class images are given)
    dataset.toml  multidatabackend.json  onetrainer_concepts.json  onetrainer_preset.json  README.txt

kohya globs ``images/`` non-recursively; SimpleTuner walks ``images/`` and ``masks/`` recursively (so ``masks/`` is
beside ``images/``, not inside); OneTrainer reads ``onetrainer/`` with "include subdirectories" off. The class
images are one folder all three read as written: RGB pictures (no mask: their whole picture is in the loss) with the
class prompt beside each; each trainer's config marks it as regularisation data with its prior-loss settings.

``repeats`` means the same in every trainer: each photo is seen that many times per epoch (kohya ``num_repeats``,
OneTrainer ``balancing`` with ``REPEATS``, SimpleTuner ``repeats`` = repeats − 1, see each module).
"""

import math

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..output_paths import numbered, output_target
from ..publish import fsync_path, publish_folder, remove, save_error, temporary_name, write_bytes
from ..rows import to_uint8
from .kohya import dataset_toml
from .class_images import class_image
from .onetrainer import concepts, training_preset
from .readme import readme
from .simpletuner import dataset_id, multidatabackend

RESOLUTIONS = (1024, 768, 512)  # SDXL / SD3 / Flux, SD2, SD1.5
REPEATS = 10  # times each photo is seen per epoch
MAX_REPEATS = 1000


def one_line_caption(caption) -> str:
    """The caption on one line (kohya reads the first line only, OneTrainer takes each line as another prompt)."""
    text = " ".join(str(caption).split()) if isinstance(caption, str) else ""
    if not text:
        raise ValueError(f"caption: expected the instance prompt, e.g. 'a photo of sks dog', got {caption!r}")
    return text


def check_pairs(images, masks) -> list:
    """[(photo (H, W, 3), mask (H, W))]: a (B, H, W, 3) batch or a list of photos of any sizes, with their masks."""
    images = [np.asarray(i, dtype=np.float32) for i in images]
    masks = [np.asarray(m, dtype=np.float32) for m in masks]
    if not images or any(i.ndim != 3 or i.shape[-1] != 3 or 0 in i.shape for i in images):
        raise ValueError(f"images: expected one or more (H, W, 3) photos, got shapes {[i.shape for i in images]}")
    if len(masks) != len(images):
        raise ValueError(f"masks: expected one mask per photo ({len(images)}), got {len(masks)}")
    for n, (image, mask) in enumerate(zip(images, masks), start=1):
        if mask.shape != image.shape[:2]:
            raise ValueError(f"masks: mask {n} is {mask.shape}, its photo {image.shape[:2]}; expected the same size")
    return list(zip(images, masks))


def check_class_images(class_images, class_prompt, prior_loss_weight) -> tuple:
    """(class images as a list, the class prompt on one line or "", the weight)."""
    class_images = list(class_images or ())
    if not class_images:
        return [], "", float(prior_loss_weight)
    if not isinstance(class_prompt, str) or not " ".join(class_prompt.split()):
        raise ValueError(f"class_prompt: expected the class prompt of the class images, e.g. 'a photo of dog', "
                         f"got {class_prompt!r}")
    if not isinstance(prior_loss_weight, (int, float)) or not math.isfinite(prior_loss_weight) or prior_loss_weight < 0:
        raise ValueError(f"prior_loss_weight: expected a number >= 0 (DreamBooth uses 1.0), got {prior_loss_weight!r}")
    return class_images, " ".join(class_prompt.split()), float(prior_loss_weight)


def export_dataset(root, name: str, images, masks, caption: str, masklabels: bool = True,
                   resolution: int = 1024, repeats: int = REPEATS, class_images=(), class_prompt: str = "",
                   prior_loss_weight: float = 1.0) -> Path:
    """Write the dataset into a new (or empty) folder ``root/name`` (numbered if taken) → its path. ``images`` is a
    (B, H, W, 3) batch or a list of (H, W, 3) photos of any sizes, ``masks`` the (H, W) masks in the same order.

    ``masklabels`` writes the ``onetrainer/`` folder; ``resolution`` is the model's native size for kohya and
    SimpleTuner (see models.dreambooth.simpletuner for how each trainer buckets: kohya never upscales, SimpleTuner and
    OneTrainer scale every photo to about ``resolution``² pixels, small ones up). ``repeats``: times each photo is
    seen per epoch, in every trainer. ``class_images`` (files or (H, W, 3) arrays, written one at a time) with
    ``class_prompt``: the class images of DreamBooth's prior-preservation loss, weighted by ``prior_loss_weight``.

    Crash-safe (models.publish): everything is written into a hidden ``.NAME.<random>.partial`` folder beside the
    target and renamed to its final name as the last step, so a dataset under its final name is always complete;
    when another process took the name meanwhile, the configs are rewritten for the next number and the rename is
    tried again. On an error the partial folder is removed, and ``SaveError`` names ``folder``, the cause and advice.
    """
    pairs = check_pairs(images, masks)
    caption = one_line_caption(caption)
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution: expected one of {list(RESOLUTIONS)} (the model's native size), got {resolution!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        raise ValueError(f"repeats: expected a whole number from 1 to {MAX_REPEATS} (times each photo is seen per "
                         f"epoch), got {repeats!r}")
    class_images, class_prompt, prior_loss_weight = check_class_images(class_images, class_prompt, prior_loss_weight)
    settings = {"count": len(pairs), "caption": caption, "resolution": resolution, "masklabels": masklabels,
                "repeats": repeats, "class_count": len(class_images), "class_prompt": class_prompt,
                "prior_loss_weight": prior_loss_weight}
    target = output_target(root, name)
    next(numbered(target))  # a name too long to number is refused before any work
    staging = temporary_name(target.parent, target.name)
    try:
        staging.mkdir()
        write_files(staging, pairs, caption, masklabels)
        write_class_images(staging, class_images, class_prompt)
        for candidate in numbered(target):
            write_configs(staging, candidate, settings)
            try:
                publish_folder(staging, candidate)
                return candidate
            except FileExistsError:
                continue  # taken by another process since we looked: the next number
    except OSError as e:
        remove(staging)
        raise save_error(e, "folder", f"the dataset {name!r}", target.parent, [staging]) from e
    except BaseException:
        remove(staging)
        raise


def write_files(folder: Path, pairs, caption: str, masklabels: bool):
    """The photos, masks and captions, each flushed to disk."""
    image_dir, mask_dir, onetrainer_dir = folder / "images", folder / "masks", folder / "onetrainer"
    for sub in (image_dir, mask_dir) + ((onetrainer_dir,) if masklabels else ()):
        sub.mkdir()
    for i, (image, mask) in enumerate(pairs, start=1):
        stem = f"{i:04d}"
        rgb, alpha = to_uint8(image), to_uint8(mask)
        png(image_dir / f"{stem}.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
        text(image_dir / f"{stem}.txt", caption + "\n")
        png(mask_dir / f"{stem}.png", Image.fromarray(alpha, "L"))
        if masklabels:
            png(onetrainer_dir / f"{stem}.png", Image.fromarray(rgb, "RGB"))
            png(onetrainer_dir / f"{stem}-masklabel.png", Image.fromarray(alpha, "L"))
            text(onetrainer_dir / f"{stem}.txt", caption + "\n")
    for sub in (image_dir, mask_dir) + ((onetrainer_dir,) if masklabels else ()):
        fsync_path(sub)


def write_class_images(folder: Path, class_images, class_prompt: str):
    """class/NAME.png (RGB) + class/NAME.txt (the class prompt), one picture in memory at a time."""
    if not class_images:
        return
    class_dir = folder / "class"
    class_dir.mkdir()
    for i, item in enumerate(class_images, start=1):
        png(class_dir / f"{i:04d}.png", class_image(item))
        text(class_dir / f"{i:04d}.txt", class_prompt + "\n")
    fsync_path(class_dir)


def png(path: Path, image: Image.Image):
    write_bytes(path, lambda file: image.save(file, format="PNG"))


def text(path: Path, content: str):
    write_bytes(path, lambda file: file.write(content.encode("utf-8")))


def write_configs(staging: Path, folder: Path, settings: dict):
    """Into ``staging``: dataset.toml (kohya), multidatabackend.json (SimpleTuner), onetrainer_concepts.json,
    onetrainer_preset.json and README.txt, with the absolute paths of ``folder``, where the dataset is about to be
    renamed to."""
    base, s = folder.as_posix(), settings
    class_dir = f"{base}/class" if s["class_count"] else None
    files = {
        "dataset.toml": dataset_toml(f"{base}/images", s["resolution"], s["repeats"], class_dir, s["prior_loss_weight"]),
        "multidatabackend.json": json.dumps(multidatabackend(
            dataset_id(folder), f"{base}/images", f"{base}/masks", f"{base}/cache", s["resolution"], s["repeats"],
            s["count"], class_dir, s["class_count"]), indent=2, ensure_ascii=False) + "\n",
        "README.txt": readme(folder, s),
    }
    if s["masklabels"]:
        concept = concepts(folder.name, f"{base}/onetrainer", s["repeats"], class_dir, s["repeats"] * s["count"],
                           s["prior_loss_weight"])
        files["onetrainer_concepts.json"] = json.dumps(concept, indent=2, ensure_ascii=False) + "\n"
        preset = training_preset(f"{base}/onetrainer_concepts.json", s["resolution"])
        files["onetrainer_preset.json"] = json.dumps(preset, indent=2, ensure_ascii=False) + "\n"
    for file_name, content in files.items():
        remove(staging / file_name)  # written for a name another process took meanwhile
        text(staging / file_name, content)
    fsync_path(staging)
