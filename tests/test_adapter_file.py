"""The adapter file without ComfyUI: deterministic bytes, ComfyUI's file mode, crash-safe publishing (models.publish)
with clear SaveErrors, and the refusals of files that would attach as nonsense; example images read as ComfyUI reads
them (EXIF orientation, 16-bit grey)."""

import errno
import os
import threading

import numpy as np
import pytest
import torch
from diffusers import SD3Transformer2DModel
from PIL import Image
from safetensors.torch import load_file, save_file

from models.diception import adapter_file
from models.diception.adapter import DEFAULT_TARGETS, TaskAdapter, adapter_weights, attach, checkpoint_identity
from models.diception.adapter_examples import read_image
from models.diception.adapter_file import load_adapter, metadata, save_adapter
from models.publish import SaveError

PROMPT = "[[image2invert]]"


def tiny_transformer():
    torch.manual_seed(0)
    return SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4, pos_embed_max_size=8,
    )


@pytest.fixture(scope="module")
def base():
    return tiny_transformer()


@pytest.fixture(scope="module")
def adapter(base):
    identity = checkpoint_identity(base)
    adapted = tiny_transformer()
    attach(adapted, "task0", 4, seed=3)
    weights = {k: v + 0.01 if "lora_B" in k else v for k, v in adapter_weights(adapted, "task0").items()}  # B ≠ 0
    return TaskAdapter("invert", PROMPT, 4, 4.0, DEFAULT_TARGETS, weights, identity, {"steps": 3, "lr": 1e-3})


def test_same_adapter_same_bytes_in_comfyui_file_mode(tmp_path, adapter, base):
    first = save_adapter(adapter, tmp_path / "a", "invert")
    second = save_adapter(adapter, tmp_path / "b", "invert")
    assert first.read_bytes() == second.read_bytes()  # safetensors alone writes its metadata in hash order
    umask = os.umask(0)
    os.umask(umask)
    assert first.stat().st_mode & 0o777 == 0o666 & ~umask  # as ComfyUI's outputs (0644 under umask 022), not 0600
    assert load_file(str(first)).keys() == adapter.weights.keys()
    loaded = load_adapter(first, base)
    assert loaded.settings == adapter.settings and all(torch.equal(loaded.weights[k], adapter.weights[k]) for k in adapter.weights)


def test_two_savers_of_one_name_in_one_process_both_keep_their_file(tmp_path, adapter, monkeypatch):
    # two containers are both PID 1: temporary names must not come from the process id (threads share one here)
    meet = threading.Barrier(2, timeout=30)
    publish = adapter_file.publish_file

    def publish_together(temp, final):
        if final.name.endswith("_00001.safetensors"):
            meet.wait()  # both files written, neither published yet
        publish(temp, final)

    monkeypatch.setattr(adapter_file, "publish_file", publish_together)
    other = TaskAdapter(**{**adapter.__dict__, "task": "other"})
    paths = []
    threads = [threading.Thread(target=lambda a=a: paths.append(save_adapter(a, tmp_path, "invert"))) for a in (adapter, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in paths) == ["invert_00001.safetensors", "invert_00002.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert {load_adapter(p, tiny_transformer()).task for p in paths} == {"invert", "other"}


def test_a_file_system_without_hard_links_still_saves(tmp_path, adapter, monkeypatch):
    def no_links(*_):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    first, second = save_adapter(adapter, tmp_path, "x"), save_adapter(adapter, tmp_path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, second.name] == ["x_00001.safetensors", "x_00002.safetensors"]


def test_write_failures_are_save_errors_naming_the_input_and_folder(tmp_path, adapter, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(SaveError, match=r"name: could not write the adapter 'invert' into .*: the disk is full.*Nothing partial"):
        save_adapter(adapter, tmp_path, "invert")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with pytest.raises(SaveError, match="name: could not write the adapter 'invert' .*the name is too long"):
        save_adapter(adapter, tmp_path.joinpath(*["f" * 250] * 17), "invert")  # a path over PATH_MAX


@pytest.mark.parametrize("name,message", [
    ("x" * 300, "name: the file name 'xxxx"),
    (".hidden", "name: '.hidden' starts with a dot"),
    ("a/b", "name: expected a plain file name"),
])
def test_bad_names_are_refused_before_writing(tmp_path, adapter, name, message):
    with pytest.raises(ValueError, match=message):
        save_adapter(adapter, tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def write(tmp_path, name, tensors, meta):
    save_file(tensors, str(tmp_path / name), metadata=meta)
    return tmp_path / name


def test_files_that_would_attach_as_nonsense_are_refused(tmp_path, adapter, base):
    meta = metadata(adapter)
    only_a = {k: v for k, v in adapter.weights.items() if "lora_A" in k}
    nan = {k: v.clone() for k, v in adapter.weights.items()}
    nan[sorted(nan)[-1]][0, 0] = float("nan")
    cases = {  # 2 blocks: 15 attention projections + 6 feed-forward layers (the last block has no ff_context) + 4 adaLN
        "only_a": (only_a, meta, r"only_a.safetensors is incomplete: 25 layer\(s\) lack their lora_B weights"),
        "nan": (nan, meta, "nan.safetensors has NaN or infinite weights"),
        "rank": (adapter.weights, {**meta, "diception.rank": "abc"}, "rank.safetensors has unreadable metadata: diception.rank = 'abc'"),
        "settings": (adapter.weights, {**meta, "diception.settings": "{oops"}, "settings.safetensors has unreadable metadata: diception.settings"),
        "targets": (adapter.weights, {**meta, "diception.targets": "7"}, "targets.safetensors has unreadable metadata"),
    }
    for name, (tensors, meta_, message) in cases.items():
        with pytest.raises(ValueError, match="adapter: " + message):
            load_adapter(write(tmp_path, f"{name}.safetensors", tensors, meta_), base)


def test_examples_are_read_upright_and_16_bit_targets_as_values(tmp_path):
    upright = (np.arange(6 * 4 * 3).reshape(6, 4, 3) * 3).astype(np.uint8)  # 4 wide, 6 high
    rotated = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # stored 6 wide, 4 high
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view (as phones write)
    rotated.save(tmp_path / "phone.jpg", exif=exif, quality=100, subsampling=0)
    image = read_image(tmp_path / "phone.jpg")
    assert image.shape == (6, 4, 3)
    assert (image * 255 - torch.from_numpy(upright.astype(np.float32))).abs().max() <= 6  # JPEG's loss, not misalignment

    depth = (np.linspace(0, 1, 12).reshape(3, 4) * 65535).round().astype(np.uint16)
    Image.fromarray(depth).save(tmp_path / "depth.png")  # I;16, as Save Depth writes
    target = read_image(tmp_path / "depth.png")
    assert target.shape == (3, 4, 3)
    assert torch.allclose(target[..., 0], torch.from_numpy(np.linspace(0, 1, 12).reshape(3, 4)).float(), atol=1e-5)
    assert torch.equal(target[..., 0], target[..., 2])
