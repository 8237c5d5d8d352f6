"""Teaching DICEPTION a new task through the real server: Load Examples → Train → Save → (fresh server) Load Adapter →
Perceive Task by the task's name; the loaded model is untouched; progress, interrupt and clear errors."""

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from comfy_server import BUILDS, ComfyError
from graphs import load_diception, perceive
from PIL import Image
from safetensors.torch import save_file
from server_messages import progress_of, with_listener

from scripts.local_comfyui import LocalComfyUI

TRAIN = {"task_name": "invert", "prompt": "[[image2invert]]", "steps": 3, "learning_rate": 1e-3, "rank": 4,
         "batch_size": 2, "resolution": 32, "seed": 0}


def write_examples(comfy, name="invert_examples", count=4, skip_target=None, extra_target=None, target_size=None):
    folder = comfy.dirs["input"] / name
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    for role in ("images", "targets"):
        (folder / role).mkdir(parents=True)
    for i in range(count):
        image = (rng.random((1, 1, 3)) * 200 + rng.random((24, 40, 3)) * 40).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"ex{i}.png")
        if f"ex{i}" != skip_target:
            target = Image.fromarray(255 - image)
            (target.resize(target_size) if target_size else target).save(folder / "targets" / f"ex{i}.png")
    if extra_target:
        Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(folder / "targets" / extra_target)
    return name


def raw_answer(node, channel, prefix):
    """The answer's ``channel`` as float32 .npy (Save Depth writes the exact values)."""
    return {
        f"{prefix}_mask": {"class_type": "ImageToMask", "inputs": {"image": [node, 0], "channel": channel}},
        f"{prefix}_save": {"class_type": "DiceptionSaveDepth", "inputs": {"depth": [f"{prefix}_mask", 0], "filename_prefix": f"adapters/{prefix}", "format": "npy"}},
    }


def arrays(comfy, entry, prefix):
    files = entry["outputs"][f"{prefix}_save"]["depth_arrays"]
    return [np.load(comfy.dirs["output"] / f["subfolder"] / f["filename"]) for f in files]


def train_graph(examples, **train):
    graph = {
        "model": load_diception(),
        "examples": {"class_type": "DiceptionLoadExamples", "inputs": {"folder": examples}},
        "train": {"class_type": "DiceptionTrainAdapter", "inputs": {"model": ["model", 0], "examples": ["examples", 0], **{**TRAIN, **train}}},
        "save_adapter": {"class_type": "DiceptionSaveAdapter", "inputs": {"adapter": ["train", 1], "name": "invert"}},
    }
    return graph


def base_graph(prefix):
    graph = {"model": load_diception(), "load": {"class_type": "LoadImage", "inputs": {"image": "adapter_probe.png"}},
             "base": perceive(["load", 0], task="normal", steps=2)}
    graph.update(raw_answer("base", "red", prefix))
    return graph


def probe(comfy):
    rng = np.random.default_rng(5)
    Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(comfy.dirs["input"] / "adapter_probe.png")


def listed(client, stem) -> str:
    """The one choice of Load DICEPTION Adapter for ``stem``.safetensors (v0.8.0 lists output/loras as a LoRA folder
    itself, older builds do not: the pack adds output/loras/diception only where ComfyUI does not list it)."""
    choices = client.get_json("/object_info/DiceptionLoadAdapter")["DiceptionLoadAdapter"]["input"]["required"]["adapter"][0]
    found = [c for c in choices if c.endswith(f"/{stem}.safetensors") or c == f"{stem}.safetensors"]
    assert len(found) == 1, choices  # each adapter once
    return found[0]


def test_train_save_and_reload_in_a_fresh_server(comfy, tmp_path):
    probe(comfy)
    before = arrays(comfy, comfy.run(base_graph("base_before")), "base_before")[0]
    graph = train_graph(write_examples(comfy))
    graph["load"] = {"class_type": "LoadImage", "inputs": {"image": "adapter_probe.png"}}
    graph["new"] = perceive(["load", 0], steps=2, task_name="invert")
    graph["new"]["inputs"]["model"] = ["train", 0]
    graph["builtin"] = perceive(["load", 0], task="normal", steps=2)
    graph["builtin"]["inputs"]["model"] = ["train", 0]
    graph["curve"] = {"class_type": "PreviewImage", "inputs": {"images": ["train", 2]}}
    for channel in ("red", "green", "blue"):
        graph.update(raw_answer("new", channel, f"new_{channel}"))
    graph.update(raw_answer("builtin", "red", "builtin"))
    entry = comfy.run(graph)
    saved = entry["outputs"]["save_adapter"]["text"][0]  # shown on the node, and its path output
    assert saved.startswith("loras/diception/invert_") and saved.endswith(".safetensors")
    trained = [arrays(comfy, entry, f"new_{c}")[0] for c in ("red", "green", "blue")]
    # built-in tasks on the adapted model, and the loaded model in another graph after training: as before
    assert np.array_equal(arrays(comfy, entry, "builtin")[0], before)
    assert np.array_equal(arrays(comfy, comfy.run(base_graph("base_after")), "base_after")[0], before)
    listed(comfy, Path(saved).stem)  # Load DICEPTION Adapter lists it once on this build (its LoRA folders)
    if comfy.build.path != BUILDS[-1].path:
        return  # reading the file back in a new process is the pack's own code: once, on the newest build

    fresh = LocalComfyUI(tmp_path / "fresh", comfy.build)
    try:
        (fresh.dirs["output"] / "loras" / "diception").mkdir(parents=True, exist_ok=True)
        shutil.copy(comfy.dirs["output"] / saved, fresh.dirs["output"] / "loras" / "diception" / "invert.safetensors")
        shutil.copy(comfy.dirs["input"] / "adapter_probe.png", fresh.dirs["input"] / "adapter_probe.png")
        again = {"model": load_diception(), "load": {"class_type": "LoadImage", "inputs": {"image": "adapter_probe.png"}},
                 "adapted": {"class_type": "DiceptionLoadAdapter", "inputs": {"model": ["model", 0], "adapter": listed(fresh.client, "invert"), "strength": 1.0}},
                 "new": perceive(["load", 0], steps=2, task_name="invert")}
        again["new"]["inputs"]["model"] = ["adapted", 0]
        for channel in ("red", "green", "blue"):
            again.update(raw_answer("new", channel, f"new_{channel}"))
        entry = fresh.client.run(again)
        reloaded = [arrays(fresh.client, entry, f"new_{c}")[0] for c in ("red", "green", "blue")]
    finally:
        fresh.stop()
    for a, b in zip(trained, reloaded):
        assert np.abs(a - b).max() <= 1e-6


def test_progress_per_step_and_interrupt_within_one_step(comfy):
    examples = write_examples(comfy, "progress_examples")
    _, messages = with_listener(comfy, lambda _: comfy.run(train_graph(examples, steps=4)))
    assert [(p["value"], p["max"]) for p in progress_of(messages, "train")] == [(i, 4) for i in range(1, 5)]

    steps = 2000

    def interrupt_midway(messages):
        prompt_id = comfy.queue(train_graph(examples, steps=steps, seed=1, checkpoint_every=2))
        deadline = time.time() + 120
        while not any(p["value"] >= 3 for p in progress_of(messages, "train")) and time.time() < deadline:
            time.sleep(0.01)
        comfy.interrupt()
        return comfy.wait(prompt_id), time.time()

    (entry, sent), messages = with_listener(comfy, interrupt_midway)
    assert entry["status"]["status_str"] == "error"
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"])
    after = [m for t, m in messages if t > sent and m["type"] == "progress"]
    assert len(after) <= 1, f"{len(after)} steps ran after the interrupt"
    # the interrupted run left its last checkpoint (at most 2 steps behind), complete and loadable for resume_from
    from safetensors import safe_open

    checkpoints = sorted((comfy.dirs["output"] / "loras" / "diception").glob("invert_checkpoint_*.safetensors"))
    assert len(checkpoints) == 1, checkpoints
    with safe_open(str(checkpoints[0]), framework="pt") as f:
        done = json.loads(f.metadata()["diception.settings"])["steps_done"]
    assert done % 2 == 0 and done >= 2
    # resume_from continues it: the saved adapter counts the steps before the interrupt too
    entry = comfy.run(train_graph(examples, steps=2, seed=1, resume_from=listed(comfy, checkpoints[0].stem)))
    with safe_open(str(comfy.dirs["output"] / entry["outputs"]["save_adapter"]["text"][0]), framework="pt") as f:
        assert json.loads(f.metadata()["diception.settings"])["steps_done"] == done + 2
    checkpoints[0].unlink()


def failure(comfy, graph) -> str:
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    return str(e.value)


def test_clear_errors(comfy):
    messages = {}
    graph = train_graph(write_examples(comfy, "missing", skip_target="ex1"))
    messages["missing partner"] = (failure(comfy, graph), ["folder", "images/ex1.png has no target"])
    graph = train_graph(write_examples(comfy, "extra", extra_target="stray.png"))
    messages["extra partner"] = (failure(comfy, graph), ["folder", "targets/stray.png has no image"])
    graph = train_graph(write_examples(comfy, "empty", count=0))
    messages["empty set"] = (failure(comfy, graph), ["folder", "no example images"])
    graph = train_graph(write_examples(comfy, "other_size", target_size=(24, 24)))
    messages["other size"] = (failure(comfy, graph), ["targets[0]", "aspect ratio", "refused"])
    for name, value, expected in (("steps", 0, "steps"), ("rank", 0, "rank"), ("rank", 257, "rank")):
        messages[f"{name} {value}"] = (failure(comfy, train_graph("other_size", **{name: value})), [expected])

    probe(comfy)
    pair = {"model": load_diception(), "load": {"class_type": "LoadImage", "inputs": {"image": "adapter_probe.png"}},
            "batch": {"class_type": "RepeatImageBatch", "inputs": {"image": ["load", 0], "amount": 3}},
            "train": {"class_type": "DiceptionTrainAdapter", "inputs": {"model": ["model", 0], "images": ["batch", 0], "targets": ["load", 0], **TRAIN}},
            "curve": {"class_type": "PreviewImage", "inputs": {"images": ["train", 2]}}}
    messages["count mismatch"] = (failure(comfy, pair), ["targets", "1 target answers for 3 example images"])
    nan = dict(pair, solid={"class_type": "SolidMask", "inputs": {"value": float("nan"), "width": 48, "height": 32}},
               nan_image={"class_type": "MaskToImage", "inputs": {"mask": ["solid", 0]}})
    nan["train"] = {**pair["train"], "inputs": {**pair["train"]["inputs"], "images": ["nan_image", 0]}}
    messages["NaN pixels"] = (failure(comfy, nan), ["images", "NaN"])

    loras = comfy.dirs["output"] / "loras" / "diception"
    loras.mkdir(parents=True, exist_ok=True)
    import torch

    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)}, str(loras / "sdxl_style.safetensors"))
    save_file({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 8)}, str(loras / "comfy_sd3.safetensors"))
    (loras / "truncated.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    for name, expected in (("sdxl_style", "SDXL"), ("comfy_sd3", "own layout"), ("truncated", "truncated or damaged")):
        graph = {"model": load_diception(), "load": {"class_type": "LoadImage", "inputs": {"image": "adapter_probe.png"}},
                 "adapted": {"class_type": "DiceptionLoadAdapter", "inputs": {"model": ["model", 0], "adapter": listed(comfy, name), "strength": 1.0}},
                 "new": perceive(["load", 0], task_name="invert")}
        graph["new"]["inputs"]["model"] = ["adapted", 0]
        graph["save"] = {"class_type": "PreviewImage", "inputs": {"images": ["new", 0]}}
        messages[name] = (failure(comfy, graph), ["adapter", expected])

    graph = train_graph("../outside")
    messages["folder outside input"] = (failure(comfy, graph), ["folder", "relative to the input folder"])
    graph = train_graph(write_examples(comfy, "naming"), steps=1)
    graph["save_adapter"]["inputs"]["name"] = "n" * 300
    messages["long name"] = (failure(comfy, graph), ["name", "300 bytes"])
    outside = comfy.dirs["output"].parent / "outside_loras"
    outside.mkdir(exist_ok=True)
    shutil.rmtree(comfy.dirs["output"] / "loras")
    (comfy.dirs["output"] / "loras").symlink_to(outside, target_is_directory=True)
    try:
        graph["save_adapter"]["inputs"]["name"] = "escape"
        messages["loras links out"] = (failure(comfy, graph), ["name", "leads outside the output folder"])
        assert list(outside.rglob("*.safetensors")) == []  # nothing was written outside the output folder
    finally:  # the folder back: ComfyUI's cached LoRA list fails (LoraLoader too) while a listed folder is gone
        (comfy.dirs["output"] / "loras").unlink()
        (comfy.dirs["output"] / "loras").mkdir()
    unexplained = {case: text[-400:] for case, (text, needles) in messages.items() if not all(n in text for n in needles)}
    assert not unexplained, unexplained
