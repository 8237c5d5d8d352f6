"""PerSAM-assisted DreamBooth: mask post-processing, the dataset export, and the nodes through the server."""

import numpy as np
import pytest
import torch
from comfy_server import ComfyError, error_message
from PIL import Image
from graphs import persam_graph, reference_png

from models.dreambooth import export_dataset, feather, grow, latent_loss_mask, training_mask


def square(size=32, lo=12, hi=20):
    m = torch.zeros(size, size)
    m[lo:hi, lo:hi] = 1
    return m


def test_grow_feather_fill_and_latent_downsampling():
    m = square()
    grown = grow(m, 2)[0]
    assert grown[10:22, 12:20].all() and grown.sum() > m.sum() and grown[9, 15] == 0  # 2 px, Euclidean
    soft = feather(m, 3)[0]
    assert soft[12:20, 12:20].eq(1).all() and 0 < soft[11, 15] < 1 and soft[5, 15] == 0
    assert torch.allclose(soft[11, 15], torch.tensor(0.75)) and torch.allclose(soft[9, 15], torch.tensor(0.25))
    ring = square(lo=8, hi=24)
    ring[12:20, 12:20] = 0
    assert training_mask(ring, 0, 0, holes=True)[0].sum() == 16 * 16
    loss = latent_loss_mask(m[None], 8)[0]
    assert loss.shape == (4, 4) and torch.allclose(loss, torch.tensor([[0, 0, 0, 0], [0, .25, .25, 0], [0, .25, .25, 0], [0, 0, 0, 0.]]))
    assert torch.equal(training_mask(torch.zeros(1, 16, 16), 4, 2)[0], torch.zeros(16, 16))  # nothing found stays empty


def test_the_export_writes_the_documented_files_and_never_overwrites(tmp_path):
    images = np.random.default_rng(0).random((2, 24, 32, 3)).astype(np.float32)
    masks = np.zeros((2, 24, 32), np.float32)
    masks[:, 4:12, 8:20] = 1
    folder = export_dataset(tmp_path, "db/dog", images, masks, "a photo of sks dog")
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == ["README.txt", "dataset.toml", "images/0001.png", "images/0001.txt", "images/0002.png",
                     "images/0002.txt", "masks/0001.png", "masks/0002.png", "multidatabackend.json",
                     "onetrainer/0001-masklabel.png", "onetrainer/0001.png", "onetrainer/0001.txt",
                     "onetrainer/0002-masklabel.png", "onetrainer/0002.png", "onetrainer/0002.txt",
                     "onetrainer_concepts.json", "onetrainer_preset.json"]
    rgba = np.asarray(Image.open(folder / "images/0001.png"))
    assert rgba.shape == (24, 32, 4) and np.array_equal(rgba[..., 3], (masks[0] * 255).astype(np.uint8))
    assert np.array_equal(rgba[..., :3], (images[0] * 255).round().astype(np.uint8))
    assert np.array_equal(np.asarray(Image.open(folder / "masks/0001.png")), rgba[..., 3])
    assert np.array_equal(np.asarray(Image.open(folder / "onetrainer/0001-masklabel.png")), rgba[..., 3])
    assert np.array_equal(np.asarray(Image.open(folder / "onetrainer/0001.png")), rgba[..., :3])
    assert (folder / "images/0002.txt").read_text() == "a photo of sks dog\n"
    assert "alpha_mask = true" in (folder / "dataset.toml").read_text()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    again = export_dataset(tmp_path, "db/dog", images, masks, "other")
    assert again.name == "dog_001" and all(p.read_bytes() == b for p, b in before.items())
    bare = export_dataset(tmp_path, "db/bare", images, masks, "x", masklabels=False)
    assert not (bare / "onetrainer").exists() and not (bare / "onetrainer_concepts.json").exists()
    assert not (bare / "onetrainer_preset.json").exists() and not (bare / "class").exists()
    assert not list(bare.rglob("*-masklabel.png"))
    with pytest.raises(ValueError, match="folder: .*climbs out"):
        export_dataset(tmp_path, "../escape", images, masks, "x")
    with pytest.raises(ValueError, match="images: expected one or more"):
        export_dataset(tmp_path, "db/empty", images[:0], masks[:0], "x")
    with pytest.raises(ValueError, match="caption: expected the instance prompt"):
        export_dataset(tmp_path, "db/nocaption", images, masks, " \n ")
    with pytest.raises(ValueError, match="resolution: expected one of"):
        export_dataset(tmp_path, "db/res", images, masks, "x", resolution=640)
    for repeats in (0, 2.5, True, 1001):
        with pytest.raises(ValueError, match="repeats: expected a whole number from 1 to 1000"):
            export_dataset(tmp_path, "db/rep", images, masks, "x", repeats=repeats)
    with pytest.raises(ValueError, match="class_prompt: expected the class prompt"):
        export_dataset(tmp_path, "db/cls", images, masks, "x", class_images=[images[0]], class_prompt=" ")
    with pytest.raises(ValueError, match="prior_loss_weight: expected a number >= 0"):
        export_dataset(tmp_path, "db/cls", images, masks, "x", class_images=[images[0]], class_prompt="a dog",
                       prior_loss_weight=float("nan"))
    assert not (tmp_path / "db/empty").exists() and not (tmp_path / "db/nocaption").exists()
    assert not (tmp_path / "db/rep").exists() and not (tmp_path / "db/cls").exists()


def test_class_images_come_from_a_folder_under_input_or_the_graph(tmp_path):
    """Class images: the pictures of a folder under the input folder (EXIF orientation applied, as Load Image does;
    not its subfolders) and arrays made in the graph, written as RGB PNGs with the class prompt beside each."""
    from models.dreambooth.class_images import class_image_files

    inputs = tmp_path / "input"
    (inputs / "dogs" / "sub").mkdir(parents=True)
    exif = Image.new("RGB", (30, 20), (200, 10, 10)).getexif()
    exif[0x0112] = 6  # orientation: rotate 90° on display
    Image.new("RGB", (30, 20), (200, 10, 10)).save(inputs / "dogs" / "b.jpg", exif=exif)
    Image.new("RGBA", (16, 12), (0, 0, 255, 40)).save(inputs / "dogs" / "a.png")
    Image.new("RGB", (8, 8)).save(inputs / "dogs" / "sub" / "ignored.png")
    (inputs / "dogs" / "notes.txt").write_text("not a picture")
    files = class_image_files(inputs, "dogs/")
    assert [f.name for f in files] == ["a.png", "b.jpg"]
    graph = np.random.default_rng(0).random((10, 14, 3)).astype(np.float32)
    images, masks = np.zeros((1, 8, 8, 3), np.float32), np.ones((1, 8, 8), np.float32)
    folder = export_dataset(tmp_path / "out", "db", images, masks, "a photo of sks dog", class_images=files + [graph],
                            class_prompt=" a photo\nof dog ")
    written = sorted(p.name for p in (folder / "class").iterdir())
    assert written == ["0001.png", "0001.txt", "0002.png", "0002.txt", "0003.png", "0003.txt"]
    assert [Image.open(folder / "class" / f"000{i}.png").mode for i in (1, 2, 3)] == ["RGB"] * 3
    assert Image.open(folder / "class/0002.png").size == (20, 30)  # EXIF rotation applied
    assert np.array_equal(np.asarray(Image.open(folder / "class/0003.png")), (graph * 255).round().astype(np.uint8))
    assert (folder / "class/0001.txt").read_text() == "a photo of dog\n"
    for bad, message in (("../out", "not a folder inside the input folder"), ("/etc", "not a folder inside"),
                         ("missing", "is not a folder in"), ("dogs/sub/..", "not a folder inside"), ("", "not a folder inside")):
        with pytest.raises(ValueError, match=f"class_folder: .*{message}"):
            class_image_files(inputs, bad)
    (inputs / "empty").mkdir()
    with pytest.raises(ValueError, match="class_folder: 'empty' holds no pictures"):
        class_image_files(inputs, "empty")
    (inputs / "link").symlink_to(tmp_path / "out")
    with pytest.raises(ValueError, match="class_folder: 'link' leads outside the input folder"):
        class_image_files(inputs, "link")


def dreambooth_graph(ref_name, folder="dreambooth/sks"):
    graph = persam_graph(ref_name, batch=4)
    for key in ("segment", "mask_image", "save_masks", "save_preview"):
        graph.pop(key)
    graph["db_mask"] = {"class_type": "PersamDreamBoothMask", "inputs": {
        "reference": ["reference", 0], "images": ["batch", 0], "grow_pixels": 4, "feather_pixels": 2,
        "fill_holes": True, "vae_factor": 8}}
    graph["db_save"] = {"class_type": "PersamSaveDreamBoothDataset", "inputs": {
        "images": ["batch", 0], "masks": ["db_mask", 0], "folder": folder, "caption": "a photo of sks toy",
        "onetrainer_masklabels": True, "repeats": 3, "class_images": ["batch", 0], "class_prompt": "a photo of toy"}}
    graph["loss_preview"] = {"class_type": "MaskToImage", "inputs": {"mask": ["db_mask", 1]}}
    graph["save_loss"] = {"class_type": "SaveImage", "inputs": {"images": ["loss_preview", 0], "filename_prefix": "db_loss"}}
    return graph


def test_dreambooth_nodes_write_a_dataset_for_four_photos(comfy):
    entry = comfy.run(dreambooth_graph(reference_png(comfy)))
    folder = comfy.dirs["output"] / entry["outputs"]["db_save"]["text"][0]
    assert sorted(p.name for p in (folder / "images").glob("*.png")) == [f"000{i}.png" for i in range(1, 5)]
    assert len(list((folder / "masks").glob("*.png"))) == 4 and len(list((folder / "images").glob("*.txt"))) == 4
    assert len(list((folder / "onetrainer").glob("*-masklabel.png"))) == 4
    assert (folder / "dataset.toml").is_file() and (folder / "multidatabackend.json").is_file()
    assert len(list((folder / "class").glob("*.png"))) == 4 and (folder / "class/0001.txt").read_text() == "a photo of toy\n"
    assert "num_repeats = 3" in (folder / "dataset.toml").read_text() and (folder / "onetrainer_preset.json").is_file()
    loss = Image.open(comfy.dirs["output"] / entry["outputs"]["save_loss"]["images"][0]["filename"])
    assert loss.size == (320 // 8, 240 // 8)


def test_an_output_folder_outside_the_output_directory_is_refused(comfy):
    with pytest.raises(ComfyError) as e:
        comfy.run(dreambooth_graph(reference_png(comfy), folder="../../etc/db"))
    assert "folder: '../../etc/db' climbs out with '..'" in error_message(e.value.body)
