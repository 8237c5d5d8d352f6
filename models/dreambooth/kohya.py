"""kohya sd-scripts: the ``dataset.toml`` of a PerSAM-assisted DreamBooth dataset (``--dataset_config``).

kohya reads ``image_dir`` non-recursively (``glob_images``), the caption from the first line of ``NAME.txt``
and, with ``alpha_mask = true``, the loss mask from the PNG's alpha channel (``--masked_loss``). Bucketing is on
and never upscales, so photos of any size and aspect ratio load; ``resolution`` is the model's native size. With
``bucket_no_upscale`` kohya makes each bucket from the photo's own size and ignores ``min_bucket_reso`` /
``max_bucket_reso`` (BaseDataset.make_buckets), so they are not written (kohya still logs that it ignores them).

Each photo is seen ``num_repeats`` times per epoch (DreamBoothDataset: ``num_train_images += num_repeats × len``).
Class images are a second subset with ``is_reg = true``: kohya repeats them until they match the photos' count per
epoch (``num_reg_images`` loop) and weights their loss by ``--prior_loss_weight`` (a command-line option; the dataset
config refuses it). Their ``alpha_mask`` is off, so their whole picture is in the loss (a missing alpha mask is ones).
"""

MIN_BUCKET_RESO = 256  # kohya's default min_bucket_reso; must be <= resolution
BUCKET_RESO_STEPS = 64


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string: quotes, backslashes and every control character escaped."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        elif 0xD800 <= ord(char) <= 0xDFFF:  # a lone surrogate (undecodable file name byte) has no TOML form
            raise ValueError(f"folder: the path holds a byte that is not UTF-8 ({char!r}); give a UTF-8 name")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def dataset_toml(image_dir: str, resolution: int, num_repeats: int = 10, class_dir: str = None,
                 prior_loss_weight: float = 1.0) -> str:
    """The kohya dataset config for one DreamBooth subset in ``image_dir`` (an absolute path), and the class images
    in ``class_dir`` as a regularisation subset when given."""
    if resolution < MIN_BUCKET_RESO:
        raise ValueError(f"resolution: expected at least {MIN_BUCKET_RESO} (kohya's min_bucket_reso), got {resolution}")
    prior = f" --prior_loss_weight {prior_loss_weight:g}" if class_dir else ""
    reg = "" if not class_dir else f"""
  [[datasets.subsets]]  # class images for the prior-preservation loss (--prior_loss_weight)
  image_dir = {toml_string(class_dir)}
  is_reg = true
  num_repeats = 1
  alpha_mask = false
"""
    return f"""# kohya sd-scripts dataset config, written by the DICEPTION + PerSAM ComfyUI pack (see README.txt).
# accelerate launch train_network.py --dataset_config dataset.toml --masked_loss{prior} ...
# image_dir is the absolute path where the dataset was written; after moving the folder, change it to the new
# location (a relative path is read from the directory kohya is started in, not from this file's folder).
[general]
caption_extension = ".txt"
shuffle_caption = false

[[datasets]]
resolution = {resolution}
batch_size = 1
enable_bucket = true
bucket_no_upscale = true
bucket_reso_steps = {BUCKET_RESO_STEPS}

  [[datasets.subsets]]
  image_dir = {toml_string(image_dir)}
  num_repeats = {num_repeats}
  alpha_mask = true
{reg}"""
