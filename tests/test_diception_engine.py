"""DICEPTION engine without ComfyUI: checkpoint application, formats, prompt cache, inputs, determinism."""

import pytest
import torch
from conftest import FIXTURES
from safetensors.torch import load_file

from models.diception import convert, load_checkpoint, load_pipeline, parse_points
from models.diception import text_encoder_files

DICE = FIXTURES / "diception" / "model"


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.safetensors", torch.float32, tmp_path_factory.mktemp("cache"))


def test_the_checkpoint_replaces_the_base_transformer(pipe):
    base = load_file(str(DICE / "tiny_sd3/transformer/diffusion_pytorch_model.safetensors"))
    ckpt = load_checkpoint(DICE / "diception_tiny.pth")
    ours = pipe.transformer.state_dict()
    differing = [k for k in base if not k.endswith("pos_embed") and not torch.equal(base[k], ckpt["transformer." + k])]
    assert len(differing) == 66  # the fixture's checkpoint differs from the base in every parameter
    for key in differing:
        assert torch.equal(ours[key], ckpt["transformer." + key].float()), key


def test_pth_and_safetensors_checkpoints_are_the_same_and_convert(tmp_path):
    pth, st = load_checkpoint(DICE / "diception_tiny.pth"), load_checkpoint(DICE / "diception_tiny.safetensors")
    assert pth.keys() == st.keys() and all(pth[k].dtype == st[k].dtype and torch.equal(pth[k], st[k]) for k in pth)
    out = convert(DICE / "diception_tiny.pth", tmp_path / "converted.safetensors")
    again = load_checkpoint(out)
    assert all(torch.equal(again[k], pth[k]) for k in pth)
    with pytest.raises(FileExistsError):
        convert(DICE / "diception_tiny.pth", out)


def test_cached_prompts_never_build_the_text_encoders(tmp_path, monkeypatch):
    image = torch.rand(1, 40, 56, 3)
    first = load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.pth", torch.float32, tmp_path / "cache")
    built = []
    original = text_encoder_files.TextEncoderFiles.load
    monkeypatch.setattr(text_encoder_files.TextEncoderFiles, "load", lambda self: built.append(1) or original(self))
    a = first(image, "depth", steps=2, guidance=2.0, resolution=64, seed=3)
    assert built == [1]  # cold cache: loaded once for both prompts ("[[image2depth]]" and "")
    # a new pipeline (as after a restart) reads the cache from disk
    second = load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.pth", torch.float32, tmp_path / "cache")
    monkeypatch.setattr(text_encoder_files.TextEncoderFiles, "load", lambda self: pytest.fail("text encoders were built"))
    b = second(image, "depth", steps=2, guidance=2.0, resolution=64, seed=3)
    assert torch.equal(a, b)


def test_two_writers_of_one_prompt_cache_entry_both_succeed(tmp_path, monkeypatch):
    """Two Ray workers encoding the same prompt at once: the second writer's whole put() lands while the first's file
    is written but not yet renamed. With one shared temporary name the first rename failed (FileNotFoundError)."""
    from models.diception import prompts

    embeds, pooled = torch.rand(1, 4, 8), torch.rand(1, 6)
    first, second = prompts.PromptCache(tmp_path, "a" * 64), prompts.PromptCache(tmp_path, "a" * 64)
    save, interleaved = prompts.save_file, []

    def save_then_let_the_other_writer_in(tensors, path, metadata=None):
        save(tensors, path, metadata=metadata)
        if not interleaved:
            interleaved.append(path)
            second.put("[[image2depth]]", embeds, pooled)

    monkeypatch.setattr(prompts, "save_file", save_then_let_the_other_writer_in)
    first.put("[[image2depth]]", embeds, pooled)
    assert interleaved and all(torch.equal(a, b) for a, b in zip(first.get("[[image2depth]]"), (embeds, pooled)))
    assert [p.name for p in first.folder.iterdir()] == [first._path("[[image2depth]]").name]  # no temporary left


def test_same_seed_same_answer_and_batch_independent(pipe):
    images = torch.rand(3, 48, 80, 3)
    whole = pipe(images, "normal", steps=1, guidance=1.0, resolution=64, seed=7)
    again = pipe(images, "normal", steps=1, guidance=1.0, resolution=64, seed=7)
    other = pipe(images, "normal", steps=1, guidance=1.0, resolution=64, seed=8)
    assert whole.shape == (3, 48, 80, 3) and torch.equal(whole, again) and not torch.equal(whole, other)


def test_point_order_changes_the_slots():
    from models.diception.pipeline import point_slots

    yx, _ = point_slots([(30, 10)], 60, 40, "yx")
    xy, _ = point_slots([(30, 10)], 60, 40, "xy")
    assert yx[0, 0].tolist() == [0.25, 0.5] and xy[0, 0].tolist() == [0.5, 0.25]


@pytest.mark.parametrize("points,message", [
    ('[{"x": -1, "y": 0}]', "outside"), ('{"x": 1}', "expected"), ("[[1, 2], [3]]", "expected"), ("nope", "not valid JSON"),
])
def test_points_are_validated(points, message):
    with pytest.raises(ValueError, match=message):
        parse_points(points, 10, 10)


def test_points_accept_the_kjnodes_format():
    assert parse_points('[{"x": 3, "y": 4}, {"x": 9, "y": 0}]', 10, 5) == [(3.0, 4.0), (9.0, 0.0)]


@pytest.mark.parametrize("task,settings,message", [
    ("point segmentation", {"points": []}, "points: the 'point segmentation' task needs 1 to 5 points"),
    ("semantic segmentation", {"category": ""}, "category: the semantic segmentation task needs a COCO category"),
    ("depth", {"resolution": 72}, "resolution: must be a multiple of 16, got 72"),
], ids=["no points", "no category", "resolution 72"])
def test_bad_task_settings_name_the_input(pipe, task, settings, message):
    with pytest.raises(ValueError) as e:
        pipe(torch.rand(1, 32, 32, 3), task, **{"steps": 1, "resolution": 64, **settings})
    assert message in str(e.value), str(e.value)


def test_zero_size_images_are_refused(pipe):
    with pytest.raises(ValueError, match="images: expected"):
        pipe(torch.zeros(0, 64, 64, 3), "depth", steps=1, resolution=64)
    with pytest.raises(ValueError, match="images: expected"):
        pipe(torch.zeros(1, 0, 64, 3), "depth", steps=1, resolution=64)


def test_a_single_file_sd3_checkpoint_gives_the_same_answers(tmp_path):
    from tiny_models import build_sd3_single_file

    folder = DICE / "tiny_sd3"
    single = build_sd3_single_file(folder, tmp_path / "sd3_tiny_single.safetensors")
    tokenizers = {"clip": folder / "tokenizer", "t5": folder / "tokenizer_3"}
    from_file = load_pipeline(single, DICE / "diception_tiny.pth", torch.float32, tmp_path / "c1", tokenizers, configs=folder)
    from_folder = load_pipeline(folder, DICE / "diception_tiny.pth", torch.float32, tmp_path / "c2")
    for name, value in from_folder.transformer.state_dict().items():
        assert torch.equal(from_file.transformer.state_dict()[name], value), name
    for name, value in from_folder.vae.state_dict().items():
        assert torch.equal(from_file.vae.state_dict()[name], value), name
    for mine, theirs in zip(from_file.text_encoder_source.load().modules(), from_folder.text_encoder_source.load().modules()):
        config = {k: v for k, v in mine.config.to_dict().items() if k != "_name_or_path"}
        assert type(mine) is type(theirs) and config == {k: v for k, v in theirs.config.to_dict().items() if k != "_name_or_path"}
        mine, theirs = mine.state_dict(), theirs.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    image = torch.rand(1, 40, 48, 3)
    a = from_file(image, "semantic segmentation", category="dog", steps=2, guidance=2.0, resolution=64)
    b = from_folder(image, "semantic segmentation", category="dog", steps=2, guidance=2.0, resolution=64)
    # Same weights, other memory addresses (views of one file): CPU fp32 kernels round by alignment. Measured with
    # bench/fp32_layout_spread.py (same weights at 16 byte offsets): up to 2.3e-6 (AVX-512, AVX2, 1 or 2 threads,
    # both dependency sets). Measured the other way: one tensor's rows out of order moves it by 6e-2 to 1, one
    # tensor scaled by 1 % by 3e-4 to 2e-2 (to_q, ff bias, proj_out, norm_out, pos_embed).
    assert (a - b).abs().max() <= 1e-5


def test_a_single_file_without_text_encoders_works_from_the_cache_and_says_what_is_missing(tmp_path):
    from tiny_models import build_sd3_single_file
    from models.weights import WeightsError

    folder = DICE / "tiny_sd3"
    bare = build_sd3_single_file(folder, tmp_path / "sd3_bare.safetensors", with_text_encoders=False)
    tokenizers = {"clip": folder / "tokenizer", "t5": folder / "tokenizer_3"}
    pipe = load_pipeline(bare, DICE / "diception_tiny.pth", torch.float32, tmp_path / "cache", tokenizers, configs=folder)
    with pytest.raises(WeightsError, match=r"no weights for the text encoder\(s\) \[.clip_l., .clip_g., .t5xxl.\]"):
        pipe(torch.rand(1, 32, 32, 3), "depth", steps=1, guidance=1.0, resolution=64)
    # fill the cache with the embeddings of the same text encoders, then the bare file suffices
    full = load_pipeline(folder, DICE / "diception_tiny.pth", torch.float32, tmp_path / "other")
    pipe.prompt_cache.put("[[image2depth]]", *full.encode_prompts(["[[image2depth]]"])["[[image2depth]]"])
    assert pipe(torch.rand(1, 32, 32, 3), "depth", steps=1, guidance=1.0, resolution=64).shape == (1, 32, 32, 3)
