"""README.txt of a PerSAM-assisted DreamBooth dataset: the layout and how each trainer loads it."""

import shlex
from pathlib import Path

TEXT = """PerSAM-assisted DreamBooth dataset: {count} photos, written by the DICEPTION + PerSAM ComfyUI pack.
Written to: {folder}
Masks come from PerSAM personalised on one reference; white = subject, black = background. Train with a
masked loss so that only the subject is learned (PerSAM paper, section 3.4): L = mean(M * ||eps - eps_theta||^2)
at latent resolution. Caption of every photo: "{caption}"

Layout (each trainer reads its own folder, which holds only what it must see):
  images/NAME.png                RGBA: the photo, alpha = mask           kohya, SimpleTuner
  images/NAME.txt                the caption (one line)                  kohya, SimpleTuner
  masks/NAME.png                 the mask, 8-bit grey, same size         SimpleTuner (mask dataset)
{onetrainer_rows}  dataset.toml                   kohya sd-scripts dataset config
  multidatabackend.json          SimpleTuner data backend config
{onetrainer_file}
Paths: dataset.toml, multidatabackend.json{and_concepts} hold ABSOLUTE paths of the folder above. kohya and
SimpleTuner read a relative path from the directory the trainer is started in, not from the config's folder.
After moving this folder to a training machine, replace the old folder path with the new one in those files
(kohya: image_dir; SimpleTuner: instance_data_dir twice, cache_dir_vae, cache_dir{onetrainer_path}).

kohya sd-scripts (train_network.py, sdxl_train_network.py, sd3_train_network.py, flux_train_network.py ...):
  accelerate launch train_network.py --dataset_config {toml_path} --masked_loss ...
  Reads images/ (not recursively) with alpha_mask = true: the alpha channel is the loss mask. Bucketing is on
  and never upscales; resolution = {resolution} (512 for SD1.5, 1024 for SDXL, SD3 and Flux).
  Do not point conditioning_data_dir at masks/ (it would stretch the mask while the photo is cropped).
SimpleTuner:
  --data_backend_config {json_path}
  Image dataset on images/ (captions: textfile), linked (conditioning_data) to the dataset of type
  "conditioning", conditioning_type "mask", on masks/; a mask is paired by its file name. Caches go to cache/.
  SimpleTuner scales every photo to about {resolution}x{resolution} pixels (small photos UP too) and trims it to its
  bucket even with "crop": false; "crop_style": "center" on both entries trims photo and mask alike (the default
  "random" draws different offsets for each). The dataset ids are unique to this folder: the entries of several
  datasets can be listed in one config.
OneTrainer:
{onetrainer_text}"""

ONETRAINER_ROWS = """  onetrainer/NAME.png            RGB photo                               OneTrainer
  onetrainer/NAME-masklabel.png  the mask                                OneTrainer
  onetrainer/NAME.txt            the caption                             OneTrainer
"""

ONETRAINER_TEXT = """  OneTrainer, like SimpleTuner, scales small photos up to about the training resolution.
  Concept: copy onetrainer_concepts.json into OneTrainer's training_concepts/ folder and pick it in the
  concepts tab (its concept_file_name), or add a concept by hand: path = the onetrainer/ folder, prompt source
  "from text file per sample", include subdirectories off. Training tab: enable "Masked Training" and set
  "Unmasked Weight" to 0 (OneTrainer's default 0.1 still trains 10 % of the background; the paper uses 0).
"""


def readme(folder: Path, count: int, caption: str, resolution: int, masklabels: bool) -> str:
    return TEXT.format(
        count=count, folder=folder, toml_path=shlex.quote(str(folder / "dataset.toml")),
        json_path=shlex.quote(str(folder / "multidatabackend.json")), caption=caption, resolution=resolution,
        onetrainer_rows=ONETRAINER_ROWS if masklabels else "",
        onetrainer_file="  onetrainer_concepts.json       OneTrainer concepts file\n" if masklabels else "",
        and_concepts=", onetrainer_concepts.json" if masklabels else "",
        onetrainer_path="; OneTrainer: path" if masklabels else "",
        onetrainer_text=ONETRAINER_TEXT if masklabels else
        "  not written (onetrainer_masklabels off). Re-export with it on for OneTrainer's -masklabel files.\n",
    )
