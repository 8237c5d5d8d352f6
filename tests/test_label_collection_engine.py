"""scripts/label_collection.py with the engine in-process (models/, no ComfyUI) on two CPU workers of Ray Data (a
Ray cluster of the test session's own, joined with ``--address``), the tiny models: every job once, in a run where a
worker is SIGKILLed after a quarter (Ray restarts it and retries its job; one run serves both rules); the driver SIGKILLed at half-way and resumed, with one picture
changed meanwhile (that job runs again); the answers equal the nodes' (DICEPTION depth through Save Depth; PerSAM
masks) on a real ComfyUI (the newest build); files read as Load Image reads them (every frame, truncated files, EXIF orientation).

About 1.5 minutes on a quiet 2-core machine (three Ray runs of 8 jobs and one of 3 PerSAM jobs; the node comparisons on the newest ComfyUI build)."""

import io
import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import graphs
from comfy_server import FIXTURES, ComfyError
from PIL import Image

from label_collection_checks import (check_exactly_once, decoded, kill_group, make_photos, run, start,
                                     wait_for, write_manifest)
from scripts import queue_workflow
from scripts.collection.engine_labeler import load_image
from scripts.collection.job_outputs import complete_keys, read_runs
from scripts.local_comfyui import ROOT

JOBS = 8
WORKERS = 2
TINY_SD3 = FIXTURES / "diception" / "model"
DEPTH = ["engine", "--workers", WORKERS, "--cpu", "diception", "--base", TINY_SD3 / "tiny_sd3",
         "--checkpoint", TINY_SD3 / "diception_tiny.safetensors", "--task", "depth", "--steps", 1, "--guidance", 1.0,
         "--seed", 0, "--resolution", 64]
PERSAM = FIXTURES / "persam" / "data"
NPY_TOLERANCE = 1e-5  # 15× the measured thread-count difference; another photo differs by 8e-3, another seed by 0.79


def command(cluster, manifest, out, *more):
    head, tail = DEPTH[:DEPTH.index("diception")], DEPTH[DEPTH.index("diception"):]
    return [*head, manifest, "--out", out, *more, *tail, "--address", cluster.address]


def starts(out) -> dict:
    counts = {}
    for line in read_runs(out):
        if line["event"] == "start":
            counts[line["id"]] = counts.get(line["id"], 0) + 1
    return counts


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), JOBS)


@pytest.fixture(scope="module")
def labelled(photos, cluster, tmp_path_factory):
    """One run over all the photos and an unreadable file, with one of its two workers SIGKILLed once a quarter of
    the jobs are done (Ray starts another and retries the job it held): (output folder, good rows, exit code, log)."""
    root = tmp_path_factory.mktemp("engine")
    broken = root / "broken.png"
    broken.write_bytes(b"not an image")
    rows = write_manifest(root / "jobs.jsonl", "all", photos, [{"id": "all/broken.png", "image": str(broken)}])
    out, log = root / "out", root / "run.log"
    driver = start(command(cluster, root / "jobs.jsonl", out), log)
    try:
        wait_for(out, JOBS // 4, driver, log)
        victim = int(sorted((out / ".runs").glob("*.jsonl"))[0].stem.rsplit("-", 1)[1])
        os.kill(victim, signal.SIGKILL)
        code = driver.wait(timeout=600)
    except BaseException:
        kill_group(driver)
        raise
    return out, rows[:-1], code, log


def test_engine_labels_every_job_once_on_two_workers_one_of_them_killed(labelled):
    out, rows, code, log = labelled
    assert code == 1, log.read_text()[-3000:]  # the unreadable file failed, alone
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (JOBS, 1, 0)
    assert summary["failures"][0]["id"] == "all/broken.png" and "cannot identify image file" in summary["failures"][0]["error"]
    found = check_exactly_once(out, rows)
    for folder in found.values():
        assert sorted(p.name for p in folder.iterdir()) == ["answer.png", "depth.npy", "depth.png", "job.json"]
        depth = np.load(folder / "depth.npy")
        assert depth.dtype == np.float32 and depth.shape == (32, 40) and np.asarray(Image.open(folder / "depth.png")).dtype == np.uint16
    workers = {json.loads((f / "job.json").read_text())["worker"] for f in found.values()}
    # the killed worker and the one Ray starts in its place, and the other (which of them gets how many jobs is
    # Ray's scheduling: on a loaded machine one worker, ready first, has taken all the jobs)
    assert 1 <= len(workers) <= WORKERS + 1, workers
    # the killed worker's job was started again (by the other worker or the one Ray starts in its place), no other
    assert max(starts(out).values()) <= 2 and sum(n > 1 for n in starts(out).values()) <= 1, starts(out)


ENGINE_EQUALS_NODES = pytest.mark.newest_build("the pack's own code on both sides; Load Image's build differences are "
                                              "test_engine_reads_every_file_as_load_image's")


@ENGINE_EQUALS_NODES
def test_engine_answers_equal_the_nodes(labelled, comfy, tmp_path):
    """Save Depth's 16-bit PNG and float32 .npy of the pack's depth workflow on a real ComfyUI, same image and settings."""
    out, rows, _, _ = labelled
    found = check_exactly_once(out, rows)
    sets = [*(s for s in graphs.TINY if s.startswith("DiceptionLoad.")), "DiceptionPerceiveTask.resolution=64",
            "DiceptionPerceiveTask.steps=1",
            "DiceptionPerceiveTask.guidance=1.0", "DiceptionPerceiveTask.seed=0"]
    for row in rows[::4]:
        image = tmp_path / f"engine_{os.path.basename(row['image'])}"
        shutil.copy(row["image"], image)
        node_out = tmp_path / image.stem
        code = queue_workflow.main([str(ROOT / "workflows" / "api" / "diception_depth.json"), "--port",
                                    comfy.url.rsplit(":", 1)[1], "--image", str(image), "--out", str(node_out)]
                                   + [a for s in sets + [f"LoadImage.image={image.name}"] for a in ("--set", s)])
        assert code == 0
        node = {p.suffix: p for p in node_out.iterdir() if re.fullmatch(r"diception_\d{5}\.(png|npy)", p.name)}
        # Ray runs a 1-CPU worker with one torch thread, the server with all cores: float sums in another order.
        # Measured on the tiny model: max 6.6e-7 on [0, 1] (bit-equal with the same thread count), 1 step of 65535.
        npy = np.abs(np.load(node[".npy"]) - np.load(found[row["id"]] / "depth.npy"))
        assert npy.max() <= NPY_TOLERANCE, (row["id"], npy.max())
        png = np.abs(decoded(node[".png"]).astype(np.int64) - decoded(found[row["id"]] / "depth.png").astype(np.int64))
        assert png.max() <= 1, (row["id"], png.max())


def test_engine_driver_killed_at_half_way_then_resumed(photos, cluster, tmp_path):
    copies = tmp_path / "photos"
    copies.mkdir()
    for photo in photos:
        shutil.copy(photo, copies / photo.name)
    rows = write_manifest(tmp_path / "jobs.jsonl", "resume", sorted(copies.iterdir()))
    out = tmp_path / "out"
    driver = start(command(cluster, tmp_path / "jobs.jsonl", out), tmp_path / "first.log")
    wait_for(out, JOBS // 2, driver, tmp_path / "first.log")
    kill_group(driver)
    finished = {json.loads((out / key / "job.json").read_text())["id"] for key in complete_keys(out)}
    changed = next(row for row in rows if row["id"] in finished)
    other = photos[0] if Path(changed["image"]).name != photos[0].name else photos[1]
    shutil.copy(other, changed["image"])  # the user replaces a finished job's picture (same name, other bytes)
    code = run(command(cluster, tmp_path / "jobs.jsonl", out, "--resume"), tmp_path / "resume.log")
    assert code == 0, (tmp_path / "resume.log").read_text()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] <= len(finished) - 1 and summary["done"] + summary["skipped"] == JOBS and summary["failed"] == 0
    check_exactly_once(out, rows)
    assert starts(out)[changed["id"]] == 2  # the changed picture was labelled again
    assert len(list((out / ".superseded").iterdir())) == 1  # its first answer kept aside
    again = [job for job, n in starts(out).items() if n > 1 and job != changed["id"]]
    assert len(again) <= WORKERS and max(starts(out).values()) <= 2, again  # only the jobs in flight at the kill


@ENGINE_EQUALS_NODES
def test_persam_engine_masks_equal_the_nodes(comfy, cluster, tmp_path):
    """PerSAM with one saved reference: each job's mask equals PerSAM Segment's for the same image and reference."""
    photos = tmp_path / "photos"
    photos.mkdir()
    test = Image.open(PERSAM / "test1.png").convert("RGB")
    variants = {"test1.png": test, "mirrored.png": test.transpose(Image.FLIP_LEFT_RIGHT), "cropped.png": test.crop((8, 8, 200, 160))}
    for name, image in variants.items():
        image.save(photos / name)
    out = tmp_path / "out"
    code = run(["engine", photos, "--out", out, "--workers", 1, "--cpu", "persam", "--sam",
                FIXTURES / "persam" / "tiny_sam.pth", "--reference", PERSAM / "ref.png", "--reference-mask",
                PERSAM / "ref_mask.png", "--address", cluster.address], tmp_path / "run.log")
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    shutil.copy(PERSAM / "ref.png", comfy.dirs["input"] / "label_ref.png")
    shutil.copy(PERSAM / "ref_mask.png", comfy.dirs["input"] / "label_ref_mask.png")
    found_any = False
    for name in variants:
        shutil.copy(photos / name, comfy.dirs["input"] / f"label_{name}")
        entry = comfy.run({
            "ref": {"class_type": "LoadImage", "inputs": {"image": "label_ref.png"}},
            "ref_mask": {"class_type": "LoadImage", "inputs": {"image": "label_ref_mask.png"}},
            "mask": {"class_type": "ImageToMask", "inputs": {"image": ["ref_mask", 0], "channel": "red"}},
            "photo": {"class_type": "LoadImage", "inputs": {"image": f"label_{name}"}},
            "sam": {"class_type": "PersamSamLoader", "inputs": {"checkpoint": "tiny_sam.pth"}},
            "reference": {"class_type": "PersamReference", "inputs": {
                "sam": ["sam", 0], "image": ["ref", 0], "mask": ["mask", 0], "fine_tune": False, "box": "", "iterations": 1000}},
            "segment": {"class_type": "PersamSegment", "inputs": {"reference": ["reference", 0], "images": ["photo", 0]}},
            "mask_image": {"class_type": "MaskToImage", "inputs": {"mask": ["segment", 0]}},
            "save": {"class_type": "SaveImage", "inputs": {"images": ["mask_image", 0], "filename_prefix": "label_mask"}},
        })
        node = decoded_view(comfy, entry["outputs"]["save"]["images"][0])[..., 0]
        ours = decoded(out / name / "mask.png")
        assert ours.shape == node.shape and (ours == node).all(), name
        found_any |= bool(ours.max() == 255)
    assert found_any  # the subject was found somewhere: the comparison is not of empty masks


def decoded_view(comfy, item) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(comfy.view(item))).convert("RGB"))


def test_engine_reads_every_file_as_load_image(comfy, tmp_path):
    """The same frames and pixels as ComfyUI's Load Image (through Save Image, which writes 255·x truncated, as
    computed here): a truncated JPEG (v0.8.0's Load Image reads it, the 2024-03 build refuses it; the engine failed), an animated GIF and WebP (every frame;
    the engine read the first), a JPEG with EXIF orientation 6."""
    rng = np.random.default_rng(5)
    frames = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(3)]
    files = {}
    frames[0].save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    files["truncated.jpg"] = 1
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    files["animated.gif"] = 3
    frames[0].save(tmp_path / "animated.webp", save_all=True, append_images=frames[1:2], lossless=True)
    files["animated.webp"] = 2
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    frames[1].save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    files["rotated.jpg"] = 1
    for name, count in files.items():
        ours = load_image(tmp_path / name)
        assert ours.shape[0] == count, (name, ours.shape)
        shutil.copy(tmp_path / name, comfy.dirs["input"] / f"frames_{name}")
        graph = {"load": {"class_type": "LoadImage", "inputs": {"image": f"frames_{name}"}},
                 "save": {"class_type": "SaveImage", "inputs": {"images": ["load", 0], "filename_prefix": "frames"}}}
        if name == "truncated.jpg" and not comfy.build.at_least(0, 8, 0):
            with pytest.raises(ComfyError, match="image file is truncated"):  # read since v0.8.0's node_helpers.pillow
                comfy.run(graph)
            continue
        entry = comfy.run(graph)
        saved = [decoded_view(comfy, item) for item in entry["outputs"]["save"]["images"]]
        expected = np.clip(255.0 * ours.numpy(), 0, 255).astype(np.uint8)
        assert len(saved) == count and all((s == e).all() for s, e in zip(saved, expected)), name
    assert load_image(tmp_path / "rotated.jpg").shape[1:3] == (32, 24)  # turned upright
