"""DICEPTION task adapters without ComfyUI (on the tiny random fixture model: learning is shown on the trained
miniature, tests/test_diception_miniature.py): determinism, built-in tasks untouched,
the adapter file (diffusers' SD3 LoRA format) and its refusals."""

import json

import pytest
import torch
from conftest import FIXTURES
from diffusers import SD3Transformer2DModel
from safetensors.torch import load_file, save_file

from models.diception import load_pipeline
from models.diception.adapter import (
    DEFAULT_RANK, DEFAULT_TARGETS, MLP_TARGETS, PRESET_SHARE_SD3_MEDIUM, TARGET_PRESETS, lora_parameter_count,
)
from models.diception.adapter_file import load_adapter, save_adapter
from models.diception.finetune import TrainingSettings, auto_learning_rate, flow_loss, sample_sigmas, train_adapter
from models.diception.single_file import SD3_MEDIUM_CONFIGS

DICE = FIXTURES / "diception" / "model"
PROMPT = "[[image2invert]]"


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.safetensors", torch.float32, tmp_path_factory.mktemp("cache"))


def invert_task(n: int, seed: int):
    """A synthetic new task: flat-coloured images with a little texture → their colour negative."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 1, 3, generator=g) + 0.15 * torch.rand(n, 32, 32, 3, generator=g)).clamp(0, 1)
    return images, 1 - images


def quick(**kw) -> TrainingSettings:
    return TrainingSettings(**{"steps": 3, "learning_rate": 1e-3, "rank": 4, "batch_size": 2, "resolution": 32, "seed": 0, **kw})


@pytest.fixture(scope="module")
def trained(pipe):
    images, targets = invert_task(8, 0)
    return train_adapter(pipe, images, targets, "invert", PROMPT, quick(steps=4, learning_rate=1e-2))


def test_default_adapter_is_under_one_percent_of_sd3_medium():
    config = SD3Transformer2DModel.load_config(SD3_MEDIUM_CONFIGS / "transformer")
    with torch.device("meta"):
        transformer = SD3Transformer2DModel.from_config(config)
    total = sum(p.numel() for p in transformer.parameters())
    lora = lora_parameter_count(transformer, DEFAULT_RANK, DEFAULT_TARGETS)
    # attention: 24 blocks × 8 projections − the last block's to_add_out (context_pre_only) = 191 layers 1536 → 1536;
    # MLP: 24 image-stream + 23 text-stream feed-forwards (the last block has none), each 1536 → 6144 → 1536;
    # adaLN: 47 block modulations 1536 → 6 × 1536, and the last block's context one 1536 → 2 × 1536 (AdaLayerNormContinuous)
    assert DEFAULT_RANK == 8
    attention, mlp, adaln = 191 * (1536 + 1536), 47 * 2 * (1536 + 6144), 47 * (1536 + 9216) + (1536 + 3072)
    assert lora == 8 * (attention + mlp + adaln) == 14_548_992
    assert total == 2_028_328_000
    assert lora / total < 0.01  # 0.717 %, as DICEPTION's "under 1 %"


def test_peft_adds_exactly_the_counted_parameters(trained):
    pipeline, adapter, _ = trained
    added = sum(v.numel() for v in adapter.weights.values())
    assert added == lora_parameter_count(pipeline.base_transformer, 4, DEFAULT_TARGETS)
    assert all(k.startswith("transformer.transformer_blocks.") and ".lora_" in k for k in adapter.weights)


def test_built_in_tasks_are_bitwise_equal_with_adapters_attached(pipe, trained):
    pipeline, adapter, _ = trained
    assert any(v.abs().sum() > 0 for k, v in adapter.weights.items() if "lora_B" in k)  # a non-trivial adapter
    images = torch.rand(2, 40, 56, 3, generator=torch.Generator().manual_seed(1))
    for task, extra in (("depth", {}), ("point segmentation", {"points": [(3, 4)]})):
        base = pipe(images, task, steps=2, guidance=2.0, resolution=64, seed=5, **extra)
        adapted = pipeline(images, task, steps=2, guidance=2.0, resolution=64, seed=5, **extra)
        assert torch.equal(base, adapted), task
    new = pipeline(images, "invert", steps=2, guidance=1.0, resolution=64, seed=5)
    assert not torch.equal(new, pipeline(images, "depth", steps=2, guidance=1.0, resolution=64, seed=5))


def test_training_leaves_the_loaded_model_as_it_was(tmp_path):
    model = load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.safetensors", torch.float32, tmp_path / "cache")
    images = torch.rand(1, 48, 48, 3, generator=torch.Generator().manual_seed(2))
    before = model(images, "normal", steps=2, guidance=1.0, resolution=64, seed=3)
    modules = [type(m) for m in model.transformer.modules()]
    state = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    train_adapter(model, *invert_task(4, 0), "invert", PROMPT, quick())
    assert [type(m) for m in model.transformer.modules()] == modules and not model.adapters
    assert all(torch.equal(v, state[k]) for k, v in model.transformer.state_dict().items())
    assert torch.equal(before, model(images, "normal", steps=2, guidance=1.0, resolution=64, seed=3))


def test_same_seed_same_adapter(pipe):
    images, targets = invert_task(6, 0)
    first = train_adapter(pipe, images, targets, "invert", PROMPT, quick(seed=11))[1].weights
    again = train_adapter(pipe, images, targets, "invert", PROMPT, quick(seed=11))[1].weights
    other = train_adapter(pipe, images, targets, "invert", PROMPT, quick(seed=12))[1].weights
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_gradient_checkpointing_gives_the_same_adapter(pipe):
    images, targets = invert_task(4, 0)
    plain = train_adapter(pipe, images, targets, "invert", PROMPT, quick(checkpointing=False))[1].weights
    saved = train_adapter(pipe, images, targets, "invert", PROMPT, quick(checkpointing=True))[1].weights
    assert all(torch.allclose(plain[k], saved[k], rtol=0, atol=1e-6) for k in plain)


def test_full_fine_tune_trains_the_loaded_transformer_itself(tmp_path):
    """The few-shot bench's baseline (bench/diception_few_shot.py): every transformer parameter trains, in place, and
    the adapter does not (its lora_B stays zero), so the baseline is the same whatever the adapter's target."""
    pipe = load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.safetensors", torch.float32, tmp_path)
    before = {n: p.clone() for n, p in pipe.base_transformer.named_parameters()}
    images, targets = invert_task(4, 0)
    _, adapter, _ = train_adapter(pipe, images, targets, "invert", PROMPT, quick(steps=2, full_fine_tune=True))
    halves_b = [w for k, w in adapter.weights.items() if "lora_B" in k]
    assert halves_b and not any(w.any() for w in halves_b)
    after = dict(pipe.base_transformer.named_parameters())
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    assert len(moved) >= 0.9 * len(before), sorted(set(before) - set(moved))
    assert not any(p.requires_grad for p in after.values())


def test_adapter_file_round_trip_and_numbering(tmp_path, pipe, trained):
    pipeline, adapter, _ = trained
    first = save_adapter(adapter, tmp_path, "invert")
    second = save_adapter(adapter, tmp_path, "invert")
    assert (first.name, second.name) == ("invert_00001.safetensors", "invert_00002.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, second.name]  # no partial file left
    loaded = load_adapter(first, pipe.base_transformer)
    assert (loaded.task, loaded.prompt, loaded.rank, loaded.targets) == ("invert", PROMPT, 4, DEFAULT_TARGETS)
    assert loaded.settings["steps"] == 4 and loaded.checkpoint == adapter.checkpoint
    assert all(torch.equal(loaded.weights[k], adapter.weights[k]) for k in adapter.weights)
    images = torch.rand(2, 32, 32, 3, generator=torch.Generator().manual_seed(4))
    again = pipe.with_adapters([loaded])
    assert torch.equal(pipeline(images, "invert", steps=2, guidance=1.0, resolution=32, seed=1),
                       again(images, "invert", steps=2, guidance=1.0, resolution=32, seed=1))


def test_diffusers_reads_the_adapter_file_as_an_sd3_lora(tmp_path, trained):
    from diffusers import StableDiffusion3Pipeline

    _, adapter, _ = trained
    path = save_adapter(adapter, tmp_path, "invert")
    result = StableDiffusion3Pipeline.lora_state_dict(str(path))
    state = result[0] if isinstance(result, tuple) else result
    assert set(state) == set(adapter.weights)
    assert all(torch.equal(state[k], adapter.weights[k]) for k in state)


def bad_file(tmp_path, name, tensors, metadata=None):
    path = tmp_path / name
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_other_loras_and_damaged_files_are_refused(tmp_path, pipe, trained):
    _, adapter, _ = trained
    good = save_adapter(adapter, tmp_path, "good")
    w = torch.zeros(4, 64)
    cases = {
        "sdxl.safetensors": ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": w}, "SDXL"),
        "comfy_sd3.safetensors": ({"diffusion_model.joint_blocks.0.x_block.attn.qkv.lora_A.weight": w}, "ComfyUI's own layout"),
        "kohya_sd3.safetensors": ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": w}, "ComfyUI's / kohya's own layout"),
        "plain_sd3.safetensors": ({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": w}, "no DICEPTION task metadata"),
    }
    for name, (tensors, message) in cases.items():
        with pytest.raises(ValueError, match="adapter: .*" + message):
            load_adapter(bad_file(tmp_path, name, tensors), pipe.base_transformer)
    wrong = {k: torch.zeros(v.shape[0], v.shape[1] + 1) if "lora_A" in k else v for k, v in load_file(str(good)).items()}
    meta = {"diception.format": "diception-task-adapter/1", "diception.prompt": PROMPT, "diception.rank": "4"}
    with pytest.raises(ValueError, match="made for another model"):
        load_adapter(bad_file(tmp_path, "bigger.safetensors", wrong, meta), pipe.base_transformer)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or damaged"):
        load_adapter(truncated, pipe.base_transformer)


BAD = [
    (lambda i, t: (i, t[:-1]), {}, "targets: 3 target answers for 4 example images"),
    (lambda i, t: ([], []), {}, "images: no examples"),
    (lambda i, t: (torch.cat([i[:1] * float("nan"), i[1:]]), t), {}, "images[0]: has NaN"),
    (lambda i, t: (i, [x[:, :16] for x in t]), {}, "targets[0]: the target is 16x32 but its image is 32x32"),
    (lambda i, t: (i, t), {"steps": 0}, "steps: expected 1 to"),
    (lambda i, t: (i, t), {"rank": 0}, "rank: expected a whole number from 1 to 256"),
    (lambda i, t: (i, t), {"rank": 257}, "rank: expected a whole number from 1 to 256"),
    (lambda i, t: (i, t), {"resolution": 40}, "resolution: expected a multiple of 16"),
]


@pytest.mark.parametrize("change,settings,message", BAD, ids=[m.split(":")[0] + ":" + m.split()[-1] for *_, m in BAD])
def test_bad_training_inputs_are_clear_errors(pipe, change, settings, message):
    images, targets = change(*invert_task(4, 0))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train_adapter(pipe, list(images), list(targets), "invert", PROMPT, quick(**settings))


def test_targets_of_the_same_shape_are_resized(pipe):
    images, targets = invert_task(2, 0)
    bigger = [torch.nn.functional.interpolate(t.permute(2, 0, 1)[None], size=(64, 64))[0].permute(1, 2, 0) for t in targets]
    _, adapter, losses = train_adapter(pipe, list(images), bigger, "invert", PROMPT, quick(steps=1))
    assert len(losses) == 1 and json.dumps(adapter.settings)


def test_target_presets_train_the_shares_the_node_shows():
    config = SD3Transformer2DModel.load_config(SD3_MEDIUM_CONFIGS / "transformer")
    with torch.device("meta"):
        transformer = SD3Transformer2DModel.from_config(config)
    total = sum(p.numel() for p in transformer.parameters())
    for preset, targets in TARGET_PRESETS.items():
        share = lora_parameter_count(transformer, DEFAULT_RANK, targets) / total
        assert f"{share:.2%}".replace("%", " %") == PRESET_SHARE_SD3_MEDIUM[preset], preset
    # 24 image-stream MLPs + 23 text-stream MLPs (the last block has none), each 1536 → 6144 → 1536
    mlp = lora_parameter_count(transformer, 32, MLP_TARGETS)
    assert mlp == 47 * 2 * 32 * (1536 + 6144)


def test_recipe_sigma_one_share_and_sigma_squared_weighting():
    settings = TrainingSettings(one_step_fraction=0.25)
    sigmas = sample_sigmas(20_000, settings, 3.0, torch.Generator().manual_seed(0))
    assert abs((sigmas == 1).float().mean().item() - 0.25) < 0.02  # the point one-step answers visit
    assert (sample_sigmas(20_000, TrainingSettings(one_step_fraction=0), 3.0, torch.Generator().manual_seed(0)) == 1).sum() == 0
    prediction, velocity = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    s = torch.tensor([0.5, 1.0])
    weighted = ((prediction - velocity) ** 2 * s.view(-1, 1, 1, 1) ** 2).mean()
    assert torch.allclose(flow_loss(prediction, velocity, s, True), weighted)
    assert torch.allclose(flow_loss(prediction, velocity, s, False), ((prediction - velocity) ** 2).mean())


def test_prompt_dropout_trains_the_unconditioned_branch(pipe):
    images, targets = invert_task(4, 0)
    always = [train_adapter(pipe, images, targets, "invert", p, quick(prompt_dropout=1.0))[1].weights for p in (PROMPT, "[[other]]")]
    never = [train_adapter(pipe, images, targets, "invert", p, quick(prompt_dropout=0.0))[1].weights for p in (PROMPT, "[[other]]")]
    assert all(torch.equal(always[0][k], always[1][k]) for k in always[0])  # the prompt never reached the model
    assert any(not torch.equal(never[0][k], never[1][k]) for k in never[0])


def test_gradient_clipping_bounds_the_update(pipe):
    images, targets = invert_task(4, 0)
    clipped = train_adapter(pipe, images, targets, "invert", PROMPT, quick(steps=1, max_grad_norm=1e-12))[1].weights
    free = train_adapter(pipe, images, targets, "invert", PROMPT, quick(steps=1, max_grad_norm=0))[1].weights
    b = [k for k in free if "lora_B" in k]
    # Adam's first step moves every weight by about lr; a gradient clipped far below Adam's epsilon barely moves it
    assert max(clipped[k].abs().max().item() for k in b) < 1e-5 < max(free[k].abs().max().item() for k in b)


def test_checkpoints_and_resume(pipe):
    images, targets = invert_task(4, 0)
    saved = []
    _, adapter, _ = train_adapter(pipe, images, targets, "invert", PROMPT, quick(steps=5, checkpoint_every=2), checkpoint=saved.append)
    assert [a.settings["steps_done"] for a in saved] == [2, 4] and adapter.settings["steps_done"] == 5
    assert any(not torch.equal(saved[0].weights[k], adapter.weights[k]) for k in adapter.weights)  # a copy, not a view
    _, resumed, _ = train_adapter(pipe, images, targets, "invert", PROMPT, quick(steps=1, learning_rate=1e-12), resume=saved[1])
    assert resumed.settings["steps_done"] == 5
    assert all(torch.allclose(resumed.weights[k], saved[1].weights[k], atol=1e-9) for k in resumed.weights)
    with pytest.raises(ValueError, match="resume_from: the saved adapter has rank 4"):
        train_adapter(pipe, images, targets, "invert", PROMPT, quick(rank=8), resume=saved[1])


def test_learning_rate_zero_is_diffusers_rate_scaled_by_the_width(pipe):
    config = SD3Transformer2DModel.load_config(SD3_MEDIUM_CONFIGS / "transformer")
    with torch.device("meta"):
        medium = SD3Transformer2DModel.from_config(config)
    assert auto_learning_rate(medium) == pytest.approx(1e-4)  # diffusers' SD3 LoRA rate on SD3-medium
    images, targets = invert_task(2, 0)
    _, adapter, _ = train_adapter(pipe, images, targets, "invert", PROMPT, quick(steps=1, learning_rate=0.0))
    width = pipe.base_transformer.config.num_attention_heads * pipe.base_transformer.config.attention_head_dim
    assert adapter.settings["learning_rate"] == pytest.approx(1e-4 * 1536 / width)  # the rate used, not 0
    # Adam's first step moves each B (zero at the start) by about the rate
    b = [v for k, v in adapter.weights.items() if ".lora_B." in k]
    assert max(v.abs().max().item() for v in b) == pytest.approx(1e-4 * 1536 / width, rel=0.2)
