"""Class images for DreamBooth's prior-preservation loss (DreamBooth paper, section 3.3): pictures of the subject's
class ("a photo of dog") trained beside the subject's photos ("a photo of sks dog"), so that the model keeps what the
class looks like while it learns the subject.

They come either from a folder (under ComfyUI's input folder, the pictures in it, not its subfolders) or as arrays
made in the graph; the dataset writes them as RGB PNGs, one at a time, with the class prompt beside each.
"""

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# What all three trainers read (kohya IMAGE_EXTENSIONS, OneTrainer and SimpleTuner image extensions)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def class_image_files(root, name: str) -> list:
    """The pictures in the folder ``root/name`` (sorted by name, not recursive), ``root`` being ComfyUI's input
    folder. ValueError naming ``class_folder`` for a name that leaves ``root``, a missing folder or one without
    pictures."""
    example = "dog_class_images"
    expected = f"expected a folder inside the input folder holding class pictures, such as {example!r}"
    if not isinstance(name, str) or "\x00" in name:
        raise ValueError(f"class_folder: {expected}, got {name!r}")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts or not parts:
        raise ValueError(f"class_folder: {name!r} is not a folder inside the input folder; {expected}")
    root = Path(os.path.realpath(root))
    folder = Path(os.path.realpath(root.joinpath(*parts)))
    if root not in folder.parents:
        raise ValueError(f"class_folder: {name!r} leads outside the input folder {root}; {expected}")
    if not folder.is_dir():
        raise ValueError(f"class_folder: {name!r} is not a folder in {root}; {expected}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"class_folder: {name!r} holds no pictures ({', '.join(IMAGE_EXTENSIONS)}); {expected}")
    return files


def class_image(item) -> Image.Image:
    """One class image as an RGB PIL image: a file (EXIF orientation applied, as ComfyUI's Load Image does) or an
    (H, W, 3) float array in [0, 1]."""
    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as picture:
                return ImageOps.exif_transpose(picture).convert("RGB")
        except OSError as e:
            raise ValueError(f"class_folder: cannot read {str(item)!r} as a picture ({e}); remove it or convert it") from e
    array = np.asarray(item, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3 or 0 in array.shape:
        raise ValueError(f"class_images: expected (H, W, 3) pictures, got shape {array.shape}")
    return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8), "RGB")
