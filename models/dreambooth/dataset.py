"""A DreamBooth dataset folder that the popular trainers read directly.

For each photo ``NAME`` (0001, 0002, …):
- ``NAME.png``: RGBA, the original RGB with alpha = mask (kohya sd-scripts ``alpha_mask``);
- ``masks/NAME.png``: grey mask, white = subject (kohya ``--masked_loss`` conditioning folder, SimpleTuner masks);
- ``NAME-masklabel.png``: white = subject (OneTrainer), unless turned off;
- ``NAME.txt``: the caption (instance prompt such as "a photo of sks dog").
Plus ``dataset.toml`` (kohya) and ``README.txt`` explaining which file each trainer uses.
"""

from pathlib import Path

import numpy as np
from PIL import Image

README = """PerSAM-assisted DreamBooth dataset ({count} photos), written by the DICEPTION + PerSAM ComfyUI pack.
Masks come from PerSAM personalised on one reference; white = subject. Train with a masked loss so that only
the subject is learned (PerSAM paper, section 3.4): L = mean(M ⊙ ||eps - eps_theta||^2) at latent resolution.

Files per photo NAME:
  NAME.png            RGBA: the photo, alpha = mask
  masks/NAME.png      the mask (white = subject)
  NAME-masklabel.png  the mask again, for OneTrainer{masklabel_note}
  NAME.txt            the caption: "{caption}"

kohya sd-scripts: dataset.toml here uses the alpha channel (alpha_mask = true); train with --masked_loss:
    accelerate launch train_network.py --dataset_config dataset.toml --masked_loss ...
  (or set conditioning_data_dir = "masks" in the subset instead of alpha_mask). kohya reads every image in
  this folder, the *-masklabel.png files too: for kohya-only training write the dataset without them.
OneTrainer: concept path = this folder; enable "Masked Training"; it reads NAME-masklabel.png and NAME.txt.
SimpleTuner: an image dataset on this folder (caption_strategy "textfile") plus a conditioning dataset of
  type "mask" on ./masks, linked with conditioning_data.
"""

TOML = """# kohya sd-scripts dataset config (see README.txt)
[general]
caption_extension = ".txt"
shuffle_caption = false

[[datasets]]
resolution = {resolution}
batch_size = 1

  [[datasets.subsets]]
  image_dir = "{folder}"
  num_repeats = 10
  alpha_mask = true
"""


def new_folder(root, name: str) -> Path:
    """``root/name`` if it does not exist or is empty, else ``name_001``, ``name_002`` …; never inside-out."""
    root = Path(root).resolve()
    target = (root / name).resolve()
    if root != target and root not in target.parents:
        raise ValueError(f"folder: {name!r} points outside the output folder {root}; give a relative name")
    candidate, n = target, 0
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = target.with_name(f"{target.name}_{n:03}")
    return candidate


def to_uint8(array: np.ndarray) -> np.ndarray:
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)


def export_dataset(root, name: str, images, masks, caption: str, masklabels: bool = True) -> Path:
    """Write the dataset into a new (or empty) folder ``root/name`` (numbered if taken) → its path."""
    images, masks = np.asarray(images, dtype=np.float32), np.asarray(masks, dtype=np.float32)
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] != 3:
        raise ValueError(f"images: expected a non-empty (B, H, W, 3) batch, got shape {images.shape}")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks: shape {masks.shape} does not match the photos' {images.shape[:3]}")
    folder = new_folder(root, name)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for i, (image, mask) in enumerate(zip(images, masks), start=1):
        stem = f"{i:04d}"
        rgb, alpha = to_uint8(image), to_uint8(mask)
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / f"{stem}.png")
        Image.fromarray(alpha, "L").save(folder / "masks" / f"{stem}.png")
        if masklabels:
            Image.fromarray(alpha, "L").save(folder / f"{stem}-masklabel.png")
        (folder / f"{stem}.txt").write_text(caption.strip() + "\n")
    note = "" if masklabels else " (not written: turned off)"
    (folder / "README.txt").write_text(README.format(count=len(images), caption=caption.strip(), masklabel_note=note))
    resolution = int(min(images.shape[1:3]) // 64 * 64) or 64
    (folder / "dataset.toml").write_text(TOML.format(resolution=resolution, folder=folder.as_posix()))
    return folder
