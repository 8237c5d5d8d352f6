"""Crash-safe saves through real ComfyUI servers (issue 19, part 1): Save DreamBooth Dataset and Save Depth never leave
a file or dataset under its final name that is not complete, whether the server is killed (SIGKILL), the disk is
full or read-only; two servers saving into one output folder never take the same name and lose nothing.

The disk-full and read-only cases mount a small tmpfs inside the output folder (needs root); where the machine
refuses the mount they skip saying so. Slowest here: the kill test (one server start + a few seconds of writing,
60 s on a loaded 2-core machine) and the two-server test (one more server start, 40 prompts, on the newest build:
under a minute there)."""

import json
import os
import signal
import subprocess
import time
import uuid

import numpy as np
import pytest
from comfy_server import BUILDS, ComfyError, error_message
from PIL import Image

from models.dreambooth import export_dataset
from scripts.local_comfyui import LocalComfyUI

BUILD = BUILDS[-1]  # the newest build: these tests start their own servers (one start each)


def tmpfs(path, size, *options):
    """Mount a tmpfs of ``size`` at ``path`` (created) or skip saying why."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join((f"size={size}",) + options), "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} (needs root and mount rights): {done.stderr.strip()}")


def unmount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def visible_files(folder):
    """Every file under ``folder`` whose path has no hidden (temporary) component."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def dataset_graph(photo, folder, caption, count=1):
    return {
        "load": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "batch": {"class_type": "RepeatImageBatch", "inputs": {"image": ["load", 0], "amount": count}},
        "mask": {"class_type": "ImageToMask", "inputs": {"image": ["batch", 0], "channel": "red"}},
        "save": {"class_type": "PersamSaveDreamBoothDataset", "inputs": {
            "images": ["batch", 0], "masks": ["mask", 0], "folder": folder, "caption": caption,
            "onetrainer_masklabels": True}},
    }


def depth_graph(photo, prefix, count=1, format="png16+npy"):
    return {
        "load": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "batch": {"class_type": "RepeatImageBatch", "inputs": {"image": ["load", 0], "amount": count}},
        "mask": {"class_type": "ImageToMask", "inputs": {"image": ["batch", 0], "channel": "green"}},
        "save": {"class_type": "DiceptionSaveDepth", "inputs": {"depth": ["mask", 0], "filename_prefix": prefix, "format": format}},
    }


def noise_photo(folder, name, size, seed=0):
    """Random pixels: PNG cannot compress them, so writing them is slow and large."""
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)).save(folder / name)
    return name


def assert_complete_dataset(folder, photos):
    """A dataset folder as the trainers read it: every file there, every PNG decodes, configs name this folder."""
    for sub, names in (("images", [f"{i:04d}{s}" for i in range(1, photos + 1) for s in (".png", ".txt")]),
                       ("masks", [f"{i:04d}.png" for i in range(1, photos + 1)])):
        assert sorted(p.name for p in (folder / sub).iterdir()) == sorted(names)
    for png in folder.rglob("*.png"):
        Image.open(png).load()
    backends = json.loads((folder / "multidatabackend.json").read_text(encoding="utf-8"))
    assert backends[0]["instance_data_dir"] == (folder / "images").as_posix()
    assert (folder / "dataset.toml").is_file() and (folder / "README.txt").is_file()


def test_a_server_killed_while_saving_a_dataset_leaves_nothing_under_the_final_name(tmp_path):
    engine = LocalComfyUI(tmp_path / "server", BUILD)
    try:
        output = engine.dirs["output"]
        photo = noise_photo(engine.dirs["input"], "kill_noise.png", 1000)
        engine.client.queue(dataset_graph(photo, "dreambooth/killed", "a photo of sks noise", count=20))
        deadline, partial = time.time() + 120, None
        while time.time() < deadline:  # wait until the save is half-way: photos written into its temporary folder
            partial = next((p for p in (output / "dreambooth").glob(".killed.*.partial")), None) if (output / "dreambooth").is_dir() else None
            if partial is not None and (partial / "images" / "0004.txt").exists():
                break
            time.sleep(0.02)
        assert partial is not None, f"the save never started: {engine.log_path.read_text()[-2000:]}"
        os.killpg(engine.proc.pid, signal.SIGKILL)
        engine.proc.wait(timeout=30)
    finally:
        engine.stop()
    assert not (partial / "dataset.toml").exists()  # killed while writing photos, before the configs
    assert not os.path.lexists(output / "dreambooth" / "killed")
    assert visible_files(output) == []  # nothing under a final name: only the hidden temporary folder is left
    # the next save takes the intended name (the leftover is hidden, not a taken dataset) and is complete
    photos, masks = np.random.default_rng(0).random((2, 24, 32, 3)), np.ones((2, 24, 32))
    again = export_dataset(output, "dreambooth/killed", photos, masks, "a photo of sks noise")
    assert again == output / "dreambooth" / "killed"
    assert_complete_dataset(again, 2)


@pytest.fixture
def small_disk(comfy):
    """A 600 kB tmpfs at ``output/full_<id>``; a read-only tmpfs at ``output/ro_<id>``."""
    tag = uuid.uuid4().hex[:6]
    full, read_only = comfy.dirs["output"] / f"full_{tag}", comfy.dirs["output"] / f"ro_{tag}"
    tmpfs(full, "600k")
    try:
        tmpfs(read_only, "64k", "ro")
        yield full, read_only
    finally:
        unmount(full), unmount(read_only)
        for path in (full, read_only):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def test_a_full_disk_or_a_read_only_folder_fails_naming_the_input_and_leaves_nothing_partial(comfy, small_disk):
    full, read_only = small_disk
    photo = noise_photo(comfy.dirs["input"], "full_noise.png", 300)  # ~270 kB per RGB(A) PNG: a dataset needs >1 MB
    with pytest.raises(ComfyError) as e:
        comfy.run(dataset_graph(photo, f"{full.name}/dataset", "a photo of sks noise"))
    message = error_message(e.value.body)
    assert "folder: could not write the dataset" in message and str(full) in message, message
    assert "disk is full" in message and "free space" in message and "Nothing partial was left behind" in message
    assert list(full.iterdir()) == []  # the temporary folder is gone too
    # Save Depth: 3 maps of 300x300 (npy 360 kB each): the first fits, the second does not
    with pytest.raises(ComfyError) as e:
        comfy.run(depth_graph(photo, f"{full.name}/depth", count=3, format="npy"))
    message = error_message(e.value.body)
    assert "filename_prefix: could not write depth map 2 of 3" in message and "disk is full" in message, message
    assert "depth_00001.npy" in message  # what was written before
    assert sorted(p.name for p in full.iterdir()) == ["depth_00001.npy"]
    assert np.load(full / "depth_00001.npy").shape == (300, 300)  # complete
    # read-only: the advice is another output folder, not another name
    for graph, input_name in ((dataset_graph(photo, f"{read_only.name}/dataset", "x"), "folder"),
                              (dataset_graph(photo, f"{read_only.name}/new/dataset", "x"), "folder"),
                              (depth_graph(photo, f"{read_only.name}/depth"), "filename_prefix")):
        with pytest.raises(ComfyError) as e:
            comfy.run(graph)
        message = error_message(e.value.body)
        assert message.split(": ", 1)[1].startswith(f"{input_name}: ") and "another output folder" in message, message
        assert "read-only" in message.lower() and "choose another name" not in message, message
    assert list(read_only.iterdir()) == []


def race_graph(tag, value):
    """One prompt saving a depth map whose every value is ``value`` and a dataset captioned ``tag``."""
    return {
        "solid": {"class_type": "SolidMask", "inputs": {"value": value, "width": 16, "height": 16}},
        "depth": {"class_type": "DiceptionSaveDepth", "inputs": {"depth": ["solid", 0], "filename_prefix": "race/depth", "format": "png16+npy"}},
        "photo": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
        "save": {"class_type": "PersamSaveDreamBoothDataset", "inputs": {
            "images": ["photo", 0], "masks": ["solid", 0], "folder": "race/dataset", "caption": f"a photo of sks {tag}",
            "onetrainer_masklabels": True}},
    }


def test_two_servers_saving_into_one_folder_take_no_name_twice_and_lose_nothing(comfy, tmp_path):
    if comfy.build != BUILD:  # the race is decided by the engine's publish (models/publish.py), the same on every build
        pytest.skip(f"run on the newest build ({BUILD.label}): one more server start and 40 prompts would test the same engine code")
    output = comfy.dirs["output"]
    if (output / "race").exists():
        pytest.fail(f"{output / 'race'} is left from an earlier run")
    second = LocalComfyUI(tmp_path / "second", comfy.build, output=output)
    try:
        sent, ids = {}, []
        for n in range(20):  # interleaved: both queues run at the same time
            for client, name in ((comfy, "a"), (second.client, "b")):
                tag, value = f"{name}{n:02d}", round((1 + n + (20 if name == "b" else 0)) / 64, 6)
                sent[tag] = value
                ids.append((client, client.queue(race_graph(tag, value))))
        for client, prompt_id in ids:
            entry = client.wait(prompt_id, timeout=300)
            assert entry["status"]["status_str"] == "success", error_message(entry)
    finally:
        second.stop()
    race = output / "race"
    arrays = sorted(race.glob("depth_*.npy"))
    assert len(arrays) == 40 and len(list(race.glob("depth_*.png"))) == 40
    values = sorted(float(np.load(p)[0, 0]) for p in arrays)
    assert values == pytest.approx(sorted(sent.values()), abs=1e-6)  # every map is there, none overwritten
    for p in arrays:
        assert np.load(p).shape == (16, 16) and Image.open(p.with_suffix(".png")).size == (16, 16)
    datasets = sorted(p for p in race.iterdir() if p.is_dir())
    assert len(datasets) == 40
    captions = {(d / "images" / "0001.txt").read_text(encoding="utf-8").strip().rsplit(" ", 1)[1] for d in datasets}
    assert captions == set(sent)  # every dataset is there, each once
    for d in datasets:
        assert_complete_dataset(d, 1)
    backend_ids = {json.loads((d / "multidatabackend.json").read_text())[0]["id"] for d in datasets}
    assert len(backend_ids) == 40  # SimpleTuner dataset ids are unique per dataset
    assert not [p for p in race.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_dataset_that_loses_the_race_for_its_name_takes_the_next_with_configs_naming_it(tmp_path, monkeypatch):
    """Engine level: another process renames its dataset to the name between our check and our rename; ours
    takes the next number and its configs (written for the first name) are rewritten for the one it got."""
    from models.dreambooth import dataset

    publish = dataset.publish_folder

    def race(staging, final):
        if final.name == "dog":  # the other process wins "dog" just before us
            final.mkdir()
            (final / "theirs.txt").write_text("theirs")
        publish(staging, final)

    monkeypatch.setattr(dataset, "publish_folder", race)
    photos, masks = np.random.default_rng(0).random((1, 24, 32, 3)), np.ones((1, 24, 32))
    folder = export_dataset(tmp_path, "db/dog", photos, masks, "a photo of sks dog")
    assert folder == tmp_path / "db" / "dog_001" and (tmp_path / "db" / "dog" / "theirs.txt").read_text() == "theirs"
    assert_complete_dataset(folder, 1)
    assert f"{folder.as_posix()}/images" in (folder / "dataset.toml").read_text(encoding="utf-8")
    assert str(folder) in (folder / "README.txt").read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["dog", "dog_001"]  # no temporary left


def test_a_rewritten_file_is_the_old_one_or_the_new_one_never_half(tmp_path):
    """models/publish.py ``replace_file`` (the miniatures' training states and weights): a write that fails half-way
    (here an exception after half the bytes, as a kill or a full disk would stop it) leaves the earlier file and no
    temporary one; a complete write replaces it."""
    from models.publish import replace_file

    path = tmp_path / "state.pt"
    path.write_bytes(b"old state")

    def half_then_fail(file):
        file.write(b"new st")
        raise OSError("the disk is full")

    with pytest.raises(OSError, match="disk is full"):
        replace_file(path, half_then_fail)
    assert path.read_bytes() == b"old state" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    replace_file(path, lambda file: file.write(b"new state"))
    assert path.read_bytes() == b"new state" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_a_rebuilt_folder_is_the_old_one_or_the_new_one_never_half(tmp_path):
    """models/publish.py ``replace_folder`` (the miniature DICEPTION's base folder, its transformer and snapshots): a
    build that fails half-way leaves the earlier folder as it was and no temporary; a complete build replaces it."""
    from models.publish import replace_folder

    base = tmp_path / "base"
    (base / "vae").mkdir(parents=True)
    (base / "vae" / "weights").write_bytes(b"old vae")

    def half_then_fail(folder):
        (folder / "text_encoder").mkdir()
        raise OSError("killed")

    with pytest.raises(OSError, match="killed"):
        replace_folder(base, half_then_fail)
    assert [p.name for p in tmp_path.iterdir()] == ["base"] and (base / "vae" / "weights").read_bytes() == b"old vae"
    replace_folder(base, lambda folder: (folder / "model_index.json").write_text("{}"))
    assert [p.name for p in tmp_path.iterdir()] == ["base"] and [p.name for p in base.iterdir()] == ["model_index.json"]
