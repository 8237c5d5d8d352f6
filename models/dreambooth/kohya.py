"""kohya sd-scripts: the ``dataset.toml`` of a PerSAM-assisted DreamBooth dataset (``--dataset_config``).

kohya reads ``image_dir`` non-recursively (``glob_images``), the caption from the first line of ``NAME.txt``
and, with ``alpha_mask = true``, the loss mask from the PNG's alpha channel (``--masked_loss``). Bucketing is on
and never upscales, so photos of any size and aspect ratio load; ``resolution`` is the model's native size.
"""

MIN_BUCKET_RESO = 256  # kohya's default; must be <= resolution
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


def dataset_toml(image_dir: str, resolution: int, num_repeats: int = 10) -> str:
    """The kohya dataset config for one DreamBooth subset in ``image_dir`` (an absolute path)."""
    if resolution < MIN_BUCKET_RESO:
        raise ValueError(f"resolution: expected at least {MIN_BUCKET_RESO} (kohya's min_bucket_reso), got {resolution}")
    return f"""# kohya sd-scripts dataset config, written by the DICEPTION + PerSAM ComfyUI pack (see README.txt).
# accelerate launch train_network.py --dataset_config dataset.toml --masked_loss ...
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
min_bucket_reso = {MIN_BUCKET_RESO}
max_bucket_reso = {2 * resolution}
bucket_reso_steps = {BUCKET_RESO_STEPS}

  [[datasets.subsets]]
  image_dir = {toml_string(image_dir)}
  num_repeats = {num_repeats}
  alpha_mask = true
"""
