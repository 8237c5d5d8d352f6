"""README.txt of a PerSAM-assisted DreamBooth dataset: the layout and how each trainer loads it."""

import shlex
from pathlib import Path

TEXT = """PerSAM-assisted DreamBooth dataset: {count} photos, written by the DICEPTION + PerSAM ComfyUI pack.
Written to: {folder}
Masks come from PerSAM personalised on one reference; white = subject, black = background. Train with a
masked loss so that only the subject is learned (PerSAM paper, section 3.4): L = mean(M * ||eps - eps_theta||^2)
at latent resolution. Caption of every photo: "{caption}"
Each photo is seen {repeats} times per epoch in every trainer (kohya num_repeats = {repeats}, OneTrainer
balancing = {repeats} repeats, SimpleTuner repeats = {simpletuner_repeats}: SimpleTuner adds one).
{class_text}
Layout (each trainer reads its own folder, which holds only what it must see):
  images/NAME.png                RGBA: the photo, alpha = mask           kohya, SimpleTuner
  images/NAME.txt                the caption (one line)                  kohya, SimpleTuner
  masks/NAME.png                 the mask, 8-bit grey, same size         SimpleTuner (mask dataset)
{class_rows}{onetrainer_rows}  dataset.toml                   kohya sd-scripts dataset config
  multidatabackend.json          SimpleTuner data backend config
{onetrainer_file}
Paths: dataset.toml, multidatabackend.json{and_concepts} hold ABSOLUTE paths of the folder above. kohya and
SimpleTuner read a relative path from the directory the trainer is started in, not from the config's folder.
After moving this folder to a training machine, replace the old folder path with the new one in those files
(kohya: every image_dir; SimpleTuner: every instance_data_dir, cache_dir_vae and cache_dir{onetrainer_path}).

kohya sd-scripts (train_network.py, sdxl_train_network.py, sd3_train_network.py, flux_train_network.py ...):
  accelerate launch train_network.py --dataset_config {toml_path} --masked_loss{kohya_prior} ...
  Reads images/ (not recursively) with alpha_mask = true: the alpha channel is the loss mask. Bucketing is on
  and never upscales; resolution = {resolution} (512 for SD1.5, 1024 for SDXL, SD3 and Flux).
{kohya_class}  Do not point conditioning_data_dir at masks/ (it would stretch the mask while the photo is cropped).
SimpleTuner:
  --data_backend_config {json_path}
  Image dataset on images/ (captions: textfile), linked (conditioning_data) to the dataset of type
  "conditioning", conditioning_type "mask", on masks/; a mask is paired by its file name. Caches go to cache/.
  SimpleTuner scales every photo to about {resolution}x{resolution} pixels (small photos UP too) and trims it to its
  bucket even with "crop": false; "crop_style": "center" on both entries trims photo and mask alike (the default
  "random" draws different offsets for each). The dataset ids are unique to this folder: the entries of several
  datasets can be listed in one config.
{simpletuner_class}OneTrainer:
{onetrainer_text}"""

ONETRAINER_ROWS = """  onetrainer/NAME.png            RGB photo                               OneTrainer
  onetrainer/NAME-masklabel.png  the mask                                OneTrainer
  onetrainer/NAME.txt            the caption                             OneTrainer
"""

ONETRAINER_TEXT = """  OneTrainer, like SimpleTuner, scales small photos up to about the training resolution.
  onetrainer_preset.json is a training config in OneTrainer's own format: masked training ON, unmasked weight 0
  (OneTrainer's default 0.1 still trains 10 % of the background; the paper uses 0), unmasked probability 0, the
  resolution, and concept_file_name = onetrainer_concepts.json here. Command line, on top of a model preset:
    python scripts/train.py --preset-path "training_presets/<model preset>.json" --config-path {preset_path}
  In the UI: load onetrainer_preset.json (top bar, after copying it into training_presets/), then pick the model;
  or keep your settings, pick onetrainer_concepts.json in the concepts tab and enable "Masked Training" with
  "Unmasked Weight" 0 in the training tab.
"""


CLASS_TEXT = """Class images (prior preservation, DreamBooth paper 3.3): {class_count} pictures in class/, each with the
class prompt "{class_prompt}", trained with the whole picture in the loss, weight {prior_loss_weight:g}, about as
many class samples per epoch as photo samples ({samples}).
"""

CLASS_ROWS = """  class/NAME.png                 class image, RGB (no mask)              all three (regularisation)
  class/NAME.txt                 the class prompt                        all three
"""

KOHYA_CLASS = """  class/ is a second subset with is_reg = true (kohya repeats it to the photos' count per epoch);
  --prior_loss_weight {prior_loss_weight:g} weights its loss (a command-line option, not a dataset setting).
"""

SIMPLETUNER_CLASS = """  class/ is an image dataset with "is_regularisation_data": true (for LyCORIS, SimpleTuner trains it towards the
  base model's own prediction), repeats set for at least {samples} class samples per epoch.
"""

ONETRAINER_CLASS = """  class/ is a second concept (STANDARD, {samples} samples per epoch, loss weight {prior_loss_weight:g}).
"""


def readme(folder: Path, settings: dict) -> str:
    s, masklabels = settings, settings["masklabels"]
    samples = s["count"] * s["repeats"]
    with_class = dict(class_count=s["class_count"], class_prompt=s["class_prompt"],
                      prior_loss_weight=s["prior_loss_weight"], samples=samples)
    has_class = bool(s["class_count"])
    onetrainer = ONETRAINER_TEXT.format(preset_path=shlex.quote(str(folder / "onetrainer_preset.json")))
    return TEXT.format(
        count=s["count"], folder=folder, toml_path=shlex.quote(str(folder / "dataset.toml")),
        json_path=shlex.quote(str(folder / "multidatabackend.json")), caption=s["caption"], resolution=s["resolution"],
        repeats=s["repeats"], simpletuner_repeats=s["repeats"] - 1,
        class_text=CLASS_TEXT.format(**with_class) if has_class else "",
        class_rows=CLASS_ROWS if has_class else "",
        kohya_prior=f" --prior_loss_weight {s['prior_loss_weight']:g}" if has_class else "",
        kohya_class=KOHYA_CLASS.format(**with_class) if has_class else "",
        simpletuner_class=SIMPLETUNER_CLASS.format(**with_class) if has_class else "",
        onetrainer_rows=ONETRAINER_ROWS if masklabels else "",
        onetrainer_file=("  onetrainer_concepts.json       OneTrainer concepts file\n"
                         "  onetrainer_preset.json         OneTrainer training config (masked training on)\n") if masklabels else "",
        and_concepts=", onetrainer_concepts.json, onetrainer_preset.json" if masklabels else "",
        onetrainer_path="; OneTrainer: path, concept_file_name" if masklabels else "",
        onetrainer_text=(onetrainer + (ONETRAINER_CLASS.format(**with_class) if has_class else "")) if masklabels else
        "  not written (onetrainer_masklabels off). Re-export with it on for OneTrainer's -masklabel files.\n",
    )
