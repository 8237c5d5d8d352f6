"""The trainers' conventions on a dataset the pack writes (checked against kohya sd-scripts, OneTrainer and SimpleTuner's
own loaders by hand, see docs/dreambooth.md; CI cannot fetch them): kohya's toml rules, the folders each trainer walks hold only
what it must see, masks (size, polarity, bit depth), odd folder names; and the workflow writing one headless."""

import json
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.dreambooth import export_dataset
from models.dreambooth.kohya import toml_string
from models.dreambooth.simpletuner import dataset_id

ROOT = Path(__file__).resolve().parent.parent
SIZES = [(48, 80), (96, 64), (40, 120)]  # (h, w): landscape, portrait, wide
KOHYA_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif", ".jxl")  # kohya's IMAGE_EXTENSIONS (and more)


def photos_and_masks():
    rng = np.random.default_rng(0)
    photos, masks = [], []
    for h, w in SIZES:
        mask = np.zeros((h, w), np.float32)
        mask[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 1
        photos.append(rng.random((h, w, 3)).astype(np.float32))
        masks.append(mask)
    return photos, masks


@pytest.fixture
def dataset(tmp_path):
    photos, masks = photos_and_masks()
    return export_dataset(tmp_path, "db/toy", photos, masks, "a photo of sks toy"), masks


def image_files(paths):
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in KOHYA_EXTENSIONS)


@pytest.mark.parametrize("resolution", [512, 768, 1024])
def test_kohya_toml_parses_with_bucketing_and_a_model_native_resolution(tmp_path, resolution):
    photos, masks = photos_and_masks()
    folder = export_dataset(tmp_path, "db", photos, masks, "a photo of sks toy", resolution=resolution)
    config = tomllib.loads((folder / "dataset.toml").read_text(encoding="utf-8"))
    dataset = config["datasets"][0]
    assert dataset["resolution"] == resolution and dataset["enable_bucket"] is True and dataset["bucket_no_upscale"] is True
    # kohya ignores min/max_bucket_reso with bucket_no_upscale (BaseDataset.make_buckets): not written (issue 29);
    # its defaults (256, 1024) pass adjust_min_max_bucket_reso_by_steps for every resolution offered
    assert "min_bucket_reso" not in dataset and "max_bucket_reso" not in dataset
    assert 256 <= resolution <= 1024 and resolution % dataset["bucket_reso_steps"] == 0
    subset = dataset["subsets"][0]
    assert subset["alpha_mask"] is True and "conditioning_data_dir" not in subset
    assert Path(subset["image_dir"]).is_absolute() and Path(subset["image_dir"]) == folder / "images"
    assert config["general"]["caption_extension"] == ".txt"
    backends = json.loads((folder / "multidatabackend.json").read_text(encoding="utf-8"))
    assert {b["resolution"] for b in backends if "resolution" in b} == {resolution}


def test_each_trainer_walks_a_folder_holding_only_what_it_must_see(dataset):
    folder, masks = dataset
    n = len(SIZES)
    # kohya: image_dir globbed non-recursively; each image has a one-line caption NAME.txt
    kohya = image_files((folder / "images").iterdir())
    assert [p.name for p in kohya] == ["0001.png", "0002.png", "0003.png"]
    for p in kohya:
        assert Image.open(p).mode == "RGBA"
        assert p.with_suffix(".txt").read_text(encoding="utf-8").splitlines() == ["a photo of sks toy"]
    # SimpleTuner: os.walk of each instance_data_dir (recursive); masks paired by the same relative path
    images_b, masks_b, text_b = json.loads((folder / "multidatabackend.json").read_text(encoding="utf-8"))
    walked = {b["id"]: image_files(Path(r) / f for r, _, fs in os.walk(b["instance_data_dir"]) for f in fs)
              for b in (images_b, masks_b)}
    assert walked[images_b["id"]] == kohya and len(walked[masks_b["id"]]) == n
    assert [p.relative_to(folder / "masks") for p in walked[masks_b["id"]]] == [p.relative_to(folder / "images") for p in kohya]
    assert images_b["dataset_type"] == "image" and images_b["conditioning_data"] == masks_b["id"]
    assert images_b["caption_strategy"] == "textfile" and text_b["dataset_type"] == "text_embeds"
    assert masks_b["dataset_type"] == "conditioning" and masks_b["conditioning_type"] == "mask"
    images_dir, masks_dir = Path(images_b["instance_data_dir"]), Path(masks_b["instance_data_dir"])
    assert images_dir not in masks_dir.parents and masks_dir not in images_dir.parents  # neither walks the other
    # OneTrainer: the concept folder, non-recursive, "-masklabel" excluded from images; NAME-masklabel.png + NAME.txt
    concept, = json.loads((folder / "onetrainer_concepts.json").read_text(encoding="utf-8"))
    assert concept["include_subdirectories"] is False and concept["text"]["prompt_source"] == "sample"
    onetrainer = Path(concept["path"])
    assert onetrainer == folder / "onetrainer" and not [p for p in onetrainer.iterdir() if p.is_dir()]
    photos = [p for p in image_files(onetrainer.iterdir()) if not p.stem.endswith("-masklabel")]
    assert [p.name for p in photos] == ["0001.png", "0002.png", "0003.png"]
    for p in photos:
        assert (onetrainer / f"{p.stem}-masklabel.png").is_file() and Image.open(p).mode == "RGB"
        assert p.with_suffix(".txt").read_text(encoding="utf-8") == "a photo of sks toy\n"
    # nothing else anywhere: the top level holds only the three folders and the configs
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "dataset.toml", "images", "masks",
                                                        "multidatabackend.json", "onetrainer", "onetrainer_concepts.json",
                                                        "onetrainer_preset.json"]


def test_masks_have_the_photo_size_8_bits_and_white_on_the_subject(dataset):
    folder, masks = dataset
    for i, ((h, w), mask) in enumerate(zip(SIZES, masks), start=1):
        rgba = Image.open(folder / "images" / f"{i:04d}.png")
        for path in (folder / "masks" / f"{i:04d}.png", folder / "onetrainer" / f"{i:04d}-masklabel.png"):
            image = Image.open(path)
            assert image.mode == "L" and image.size == (w, h) == rgba.size  # 8-bit grey, PIL size is (w, h)
            pixels = np.asarray(image)
            assert pixels.dtype == np.uint8 and set(np.unique(pixels)) == {0, 255}
            assert np.array_equal(pixels == 255, mask > 0.5)  # white = subject
            assert np.array_equal(pixels, np.asarray(rgba)[..., 3])  # the same mask as kohya's alpha


@pytest.mark.parametrize("name", ['quote"d', "back\\slash", "new\nline", "tab\tand #hash", "ünïcødé 狗 🐕", "[brackets]*?",
                                  "trailing space "])
def test_odd_folder_names_round_trip_through_toml_and_json(tmp_path, name):
    photos, masks = photos_and_masks()
    folder = export_dataset(tmp_path, f"db/{name}", photos[:1], masks[:1], "a photo of sks toy")
    assert folder.name == name
    subset = tomllib.loads((folder / "dataset.toml").read_text(encoding="utf-8"))["datasets"][0]["subsets"][0]
    assert subset["image_dir"] == (folder / "images").as_posix() and Path(subset["image_dir"]).is_dir()
    backends = json.loads((folder / "multidatabackend.json").read_text(encoding="utf-8"))
    assert backends[1]["instance_data_dir"] == (folder / "masks").as_posix()
    assert json.loads((folder / "onetrainer_concepts.json").read_text(encoding="utf-8"))[0]["path"] == (folder / "onetrainer").as_posix()


SIMPLETUNER_CROP_STYLES = ("random", "corner", "center", "centre", "face")  # SimpleTuner's validate_crop_style (bc8e6ab7)


def test_simpletuner_trims_photo_and_mask_alike_and_each_dataset_has_its_own_ids(tmp_path):
    """Issue 19, part 3. SimpleTuner (bc8e6ab7) reads ``crop`` and ``crop_style`` of each entry (factory
    init_backend_config; TrainingSample reads ``crop_style`` with the default "random"), trims a photo to its bucket
    even with ``"crop": false``, the photo when caching latents and the mask when collating: only the deterministic
    "center" on BOTH entries keeps them aligned. Run with SimpleTuner's own factory, sampler
    (connect_conditioning_samples) and collate on photos of three sizes: 0 of 18 draws differ with this config,
    16 and 17 of 18 in two runs without crop_style (README, Bucketing and crops). Two datasets (same folder name,
    different folders) concatenated into one config: unique ids, at most one default text-embed backend (SimpleTuner
    refuses two)."""
    photos, masks = photos_and_masks()
    first = export_dataset(tmp_path / "a", "db/toy", photos, masks, "a photo of sks toy")
    second = export_dataset(tmp_path / "b", "db/toy", photos, masks, "a photo of sks toy")
    configs = [json.loads((f / "multidatabackend.json").read_text(encoding="utf-8")) for f in (first, second)]
    for folder, (image, mask, text) in zip((first, second), configs):
        for entry in (image, mask):
            assert entry["crop"] is False and entry["crop_style"] == "center" in SIMPLETUNER_CROP_STYLES
            assert entry["resolution_type"] == "pixel_area" and entry["resolution"] == 1024
        assert image["id"] == dataset_id(folder) and image["conditioning_data"] == mask["id"]
        assert image["text_embeds"] == text["id"] and text["dataset_type"] == "text_embeds" and "default" not in text
        assert all(re.fullmatch(r"[A-Za-z0-9._-]+", e["id"]) for e in (image, mask, text))  # ids name cache files
    merged = configs[0] + configs[1]
    assert len({e["id"] for e in merged}) == len(merged) == 6
    assert sum(e.get("default") is True for e in merged) <= 1
    assert dataset_id(first) == dataset_id(first) != dataset_id(second)  # stable for a folder, unique across folders
    assert dataset_id(tmp_path / "ünï cødé [x]").startswith("persam-n-c-d-x-")  # odd names give safe ids


def test_the_docstrings_say_which_trainers_upscale():
    """kohya (bucket_no_upscale) never upscales; SimpleTuner and OneTrainer scale small photos up to ~resolution²."""
    from models.dreambooth import dataset, readme, simpletuner

    assert "and never upscales" not in dataset.export_dataset.__doc__ + simpletuner.__doc__  # said of all trainers before
    assert "small ones up" in dataset.export_dataset.__doc__ and "small photos UP" in simpletuner.__doc__
    text = readme.readme(Path("/x"), {"count": 3, "caption": "c", "resolution": 1024, "masklabels": True, "repeats": 10,
                                      "class_count": 0, "class_prompt": "", "prior_loss_weight": 1.0})
    assert "crop_style" in text and "scales small photos up" in text


def test_toml_strings_escape_every_control_character():
    text = "".join(chr(c) for c in range(0x80)) + '\\"\u00e9\U0001F415'
    assert tomllib.loads(f"x = {toml_string(text)}")["x"] == text
    with pytest.raises(ValueError, match="not UTF-8"):
        toml_string("bad\udcff")


def test_the_dreambooth_workflow_writes_such_a_dataset_headless(comfy, tmp_path):
    from graphs import TINY

    port = comfy.url.rsplit(":", 1)[1]
    images = [str(p) for p in (ROOT / "workflows" / "images").glob("*.png")]
    name = "dreambooth/headless_check"
    cmd = [sys.executable, str(ROOT / "scripts" / "queue_workflow.py"), str(ROOT / "workflows" / "api" / "persam_dreambooth_dataset.json"),
           "--port", port, "--out", str(tmp_path / "out"), "--set", f"PersamSaveDreamBoothDataset.folder={name}"]
    cmd += [a for i in images for a in ("--image", i)] + [a for s in TINY for a in ("--set", s)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    folder = max((comfy.dirs["output"] / "dreambooth").glob("headless_check*"), key=lambda p: p.stat().st_mtime)
    config = tomllib.loads((folder / "dataset.toml").read_text(encoding="utf-8"))
    assert config["datasets"][0]["resolution"] == 1024 and config["datasets"][0]["enable_bucket"] is True
    photos = image_files((folder / "images").iterdir())
    assert len(photos) == 1 and all(Image.open(p).mode == "RGBA" for p in photos)  # the template's one photo
    assert [p.name for p in image_files((folder / "masks").iterdir())] == [p.name for p in photos]
    assert len(list((folder / "onetrainer").glob("*-masklabel.png"))) == 1
    for p in photos:
        mask = Image.open(folder / "masks" / p.name)
        assert mask.mode == "L" and mask.size == Image.open(p).size


def test_a_list_of_photos_is_saved_as_one_dataset(comfy):
    """INPUT_IS_LIST: photos arriving as a list (here from core Rebatch Images; image-list loaders of other packs
    give lists of different sizes) and masks mapped per photo become one dataset."""
    Image.fromarray(np.full((36, 52, 3), 200, np.uint8)).save(comfy.dirs["input"] / "list_photo.png")
    graph = {
        "load": {"class_type": "LoadImage", "inputs": {"image": "list_photo.png"}},
        "batch": {"class_type": "RepeatImageBatch", "inputs": {"image": ["load", 0], "amount": 3}},
        "list": {"class_type": "RebatchImages", "inputs": {"images": ["batch", 0], "batch_size": 1}},
        "mask": {"class_type": "ImageToMask", "inputs": {"image": ["list", 0], "channel": "red"}},
        "save": {"class_type": "PersamSaveDreamBoothDataset", "inputs": {
            "images": ["list", 0], "masks": ["mask", 0], "folder": "dreambooth/list_check", "caption": "a photo of sks box",
            "onetrainer_masklabels": False, "resolution": "512 (SD1.5)"}},
    }
    folder = comfy.dirs["output"] / comfy.run(graph)["outputs"]["save"]["text"][0]
    assert [p.name for p in image_files((folder / "images").iterdir())] == ["0001.png", "0002.png", "0003.png"]
    assert not (folder / "onetrainer").exists()
    assert tomllib.loads((folder / "dataset.toml").read_text(encoding="utf-8"))["datasets"][0]["resolution"] == 512


# Each trainer's rule for how often a photo is seen in one epoch, as its own code counts (issue 29; run with the
# trainers' loaders on datasets of 5 photos and 3 class images, repeats 1, 3, 10: docs/dreambooth.md):
def kohya_epoch(dataset: dict, counts: dict) -> dict:
    """kohya DreamBoothDataset: each image registered num_repeats times (num_train_images += num_repeats × len);
    is_reg subsets are registered round-robin until they match the training images' count (num_reg_images loop)."""
    train = {s["image_dir"]: s["num_repeats"] * counts[s["image_dir"]] for s in dataset["subsets"] if not s.get("is_reg")}
    reg = {s["image_dir"]: counts[s["image_dir"]] for s in dataset["subsets"] if s.get("is_reg")}
    total = sum(train.values())
    return {**train, **{d: total if n else 0 for d, n in reg.items()}}


def onetrainer_epoch(concepts: list, counts: dict) -> dict:
    """mgds VariationSorting: REPEATS → floor(len × balancing) samples, SAMPLES → int(balancing) samples."""
    return {c["path"]: math.floor(counts[c["path"]] * c["balancing"]) if c["balancing_strategy"] == "REPEATS"
            else int(c["balancing"]) for c in concepts}


def simpletuner_epoch(backends: list, counts: dict) -> dict:
    """SimpleTuner discovery metadata backend __len__ (batch 1): len × (repeats + 1), after max_num_samples."""
    return {b["instance_data_dir"]: min(counts[b["instance_data_dir"]], b.get("max_num_samples") or 10 ** 9)
            * (b.get("repeats", 0) + 1) for b in backends if b["dataset_type"] == "image"}


@pytest.mark.parametrize("repeats,class_count", [(1, 3), (3, 3), (10, 3), (2, 7), (4, 0)])
def test_each_photo_is_seen_repeats_times_per_epoch_in_every_trainer_and_class_images_are_regularisation(
        tmp_path, repeats, class_count):
    photos, masks = photos_and_masks()
    classes = [np.full((20, 30, 3), i / 10, np.float32) for i in range(class_count)]
    folder = export_dataset(tmp_path, "db", photos, masks, "a photo of sks toy", repeats=repeats, class_images=classes,
                            class_prompt="a photo of toy", prior_loss_weight=0.5)
    images, klass, onetrainer = (folder / "images").as_posix(), (folder / "class").as_posix(), (folder / "onetrainer").as_posix()
    counts = {images: len(SIZES), onetrainer: len(SIZES), klass: class_count}
    photo_samples = repeats * len(SIZES)
    toml = (folder / "dataset.toml").read_text(encoding="utf-8")
    kohya = tomllib.loads(toml)["datasets"][0]
    concepts = json.loads((folder / "onetrainer_concepts.json").read_text(encoding="utf-8"))
    backends = json.loads((folder / "multidatabackend.json").read_text(encoding="utf-8"))
    for epoch in (kohya_epoch(kohya, counts), onetrainer_epoch(concepts, counts), simpletuner_epoch(backends, counts)):
        photo_dir = onetrainer if onetrainer in epoch else images
        assert epoch[photo_dir] == photo_samples  # each photo `repeats` times
        if class_count:  # about as many class samples as photo samples (SimpleTuner: whole repeats, at most one more each)
            assert photo_samples <= epoch[klass] < photo_samples + class_count
        else:
            assert klass not in epoch
    assert [b.get("repeats") for b in backends if b["dataset_type"] == "image"][0] == repeats - 1
    if not class_count:
        assert len(kohya["subsets"]) == 1 and len(concepts) == 1 and len(backends) == 3 and not (folder / "class").exists()
        assert "--prior_loss_weight" not in toml
        return
    # kohya: a second subset with is_reg, whole picture in the loss; prior_loss_weight is a command-line option
    # (its dataset-config schema refuses the key)
    reg = kohya["subsets"][1]
    assert reg == {"image_dir": klass, "is_reg": True, "num_repeats": 1, "alpha_mask": False}
    assert "prior_loss_weight" not in json.dumps(tomllib.loads(toml)) and "--prior_loss_weight 0.5" in toml
    # OneTrainer: a second STANDARD concept (not VALIDATION, not PRIOR_PREDICTION) with its loss weight
    assert concepts[1]["path"] == klass and concepts[1]["type"] == "STANDARD" and concepts[1]["loss_weight"] == 0.5
    assert concepts[0]["loss_weight"] == 1.0 and concepts[1]["include_subdirectories"] is False
    # SimpleTuner: an image dataset with is_regularisation_data, no mask, the same text-embed cache, its own VAE cache
    entry = backends[3]
    assert entry["is_regularisation_data"] is True and entry["dataset_type"] == "image" and "conditioning_data" not in entry
    assert entry["text_embeds"] == backends[0]["text_embeds"] and entry["cache_dir_vae"] != backends[0]["cache_dir_vae"]
    assert entry["crop_style"] == "center" and entry["caption_strategy"] == "textfile"
    assert len({b["id"] for b in backends}) == 4
    # one class folder all three read: RGB pictures (no alpha) with the class prompt beside each
    pictures = image_files((folder / "class").iterdir())
    assert len(pictures) == class_count and all(Image.open(p).mode == "RGB" for p in pictures)
    assert all(p.with_suffix(".txt").read_text(encoding="utf-8") == "a photo of toy\n" for p in pictures)


ONETRAINER_TRAIN_CONFIG_KEYS = {"concept_file_name": str, "resolution": str, "masked_training": bool,
                                "unmasked_weight": float, "unmasked_probability": float}  # TrainConfig (23df3832)


def test_the_onetrainer_preset_switches_masked_training_on():
    """OneTrainer's masked training lives in its training config (TrainConfig, default off): the preset is a partial
    TrainConfig in the current format (__version 11, so no migration runs) that scripts/train.py applies with
    --config-path on top of a model preset and the UI loads; TrainConfig parses it with masked_training on."""
    from models.dreambooth.onetrainer import training_preset

    preset = training_preset("/data/db/onetrainer_concepts.json", 1024)
    assert preset.pop("__version") == 11
    assert {k: type(v) for k, v in preset.items()} == ONETRAINER_TRAIN_CONFIG_KEYS
    assert preset["masked_training"] is True and preset["unmasked_weight"] == 0.0 == preset["unmasked_probability"]
    assert preset["concept_file_name"] == "/data/db/onetrainer_concepts.json" and preset["resolution"] == "1024"
