"""Few-shot fine-tuning: teach DICEPTION a new task from example (image, target answer) pairs with a LoRA adapter.

SD3's rectified-flow objective in DICEPTION's layout: the example image's latent (VAE posterior mode) is the clean
condition; the target's latent ``z`` is noised as ``x_t = (1 − σ)·z + σ·ε`` and the transformer, called with timestep
``σ·1000`` (float32, as the sampler gives it), predicts the velocity ``ε − z`` on the target tokens. ``σ`` is
logit-normal (mean 0, std 1, as diffusers' SD3 training) and shifted as the model's scheduler shifts it:
``σ' = s·σ / (1 + (s − 1)·σ)``; a fraction of the examples (``one_step_fraction``) is trained at σ = 1 exactly, the
only point a one-step answer visits (the shifted logit-normal puts about 3 % of draws above 0.95). The loss is the
velocity error weighted by σ² (``precondition``: diffusers' ``precondition_outputs``, the error of the implied clean
latent ``x_t − σ·v``), so high noise, where one-step answers are made, weighs most. The task prompt is encoded once
(through the prompt cache); the point slots are empty, as for every task without points. With probability
``prompt_dropout`` an example is trained as the unconditioned branch sees it under guidance (empty prompt, zero point
tokens), since guidance > 1 runs the adapter there too.

Only the adapter trains (fp32 weights; bf16/fp16 autocast on GPUs, fp16 with a GradScaler); AdamW with the gradient
norm clipped (``max_grad_norm``, diffusers: 1.0); every random draw comes from ``seed`` on the CPU, so the same seed
on the same device gives the same adapter. ``resume``: start from a saved adapter's weights (rank and targets must
match); ``checkpoint(adapter)`` is called every ``checkpoint_every`` steps with the adapter so far. ``full_fine_tune``: every
parameter of the loaded transformer trains, in place, instead of the adapter (which stays a no-op: its ``lora_B`` is
zero), so the baseline a few-shot adapter is measured against in bench/diception_few_shot.py does not change with the
adapter's target or rank; no file holds the result, so this is no mode for users.
"""

import math
from dataclasses import asdict, dataclass, replace
from typing import Callable, Optional

import torch

from . import adapter as adapters
from .pipeline import RESOLUTION_MULTIPLE, DicePipeline, point_slots, preprocess
from .tasks import TASK_PROMPTS
from .transformer import diception_forward

ASPECT_TOLERANCE = 0.02  # a target whose aspect ratio differs more from its image's is refused, else resized
# diffusers' SD3 LoRA learning rate (train_dreambooth_lora_sd3.py), for SD3-medium's width (24 heads × 64)
REFERENCE_LEARNING_RATE, REFERENCE_WIDTH = 1e-4, 1536


@dataclass
class TrainingSettings:
    steps: int = 300
    learning_rate: float = 0.0  # 0: auto_learning_rate (1e-4 on SD3-medium)
    rank: int = adapters.DEFAULT_RANK
    targets: tuple = adapters.DEFAULT_TARGETS
    batch_size: int = 1
    resolution: int = 768
    seed: int = 0
    checkpointing: bool = True
    weight_decay: float = 1e-4
    logit_mean: float = 0.0
    logit_std: float = 1.0
    precondition: bool = True  # σ²-weighted velocity loss (diffusers' precondition_outputs)
    one_step_fraction: float = 0.25  # share of examples trained at σ = 1 (one-step answers)
    max_grad_norm: float = 1.0  # 0: no clipping
    prompt_dropout: float = 0.0  # share of examples trained as the unconditioned branch (empty prompt)
    checkpoint_every: int = 0  # steps between checkpoints (0: none)
    full_fine_tune: bool = False  # every transformer parameter trains instead, IN PLACE (a benchmark baseline: no file holds it)


def check_examples(images, targets) -> None:
    """Clear errors for what cannot be trained on: count mismatch, no examples, NaN pixels, misshapen targets."""
    if len(images) != len(targets):
        raise ValueError(f"targets: {len(targets)} target answers for {len(images)} example images; give one target per image")
    if not images:
        raise ValueError("images: no examples; give at least one image with its target answer (the paper uses about 50)")
    for kind, batch in (("images", images), ("targets", targets)):
        for i, item in enumerate(batch):
            if item.ndim != 3 or item.shape[-1] != 3 or 0 in item.shape:
                raise ValueError(f"{kind}[{i}]: expected an (H, W, 3) RGB image, got shape {tuple(item.shape)}")
            if not torch.isfinite(item).all():
                raise ValueError(f"{kind}[{i}]: has NaN or infinite pixel values; every pixel must be a number in [0, 1]")
    for i, (image, target) in enumerate(zip(images, targets)):
        (ih, iw), (th, tw) = image.shape[:2], target.shape[:2]
        if abs(math.log((iw / ih) / (tw / th))) > ASPECT_TOLERANCE:
            raise ValueError(
                f"targets[{i}]: the target is {tw}x{th} but its image is {iw}x{ih}; a target must have its image's "
                "aspect ratio (targets of another size but the same shape are resized, others are refused, since "
                "stretching would misalign them)"
            )


def check_settings(settings: TrainingSettings, pipeline: DicePipeline) -> None:
    if not 1 <= settings.steps <= adapters.MAX_STEPS:
        raise ValueError(f"steps: expected 1 to {adapters.MAX_STEPS} training steps, got {settings.steps}")
    adapters.check_rank(settings.rank)
    if settings.batch_size < 1:
        raise ValueError(f"batch_size: expected at least 1 example per step, got {settings.batch_size}")
    if not settings.learning_rate >= 0 or not math.isfinite(settings.learning_rate):
        raise ValueError(f"learning_rate: expected a positive number (or 0: chosen for the model's width), got {settings.learning_rate}")
    for name in ("one_step_fraction", "prompt_dropout"):
        value = getattr(settings, name)
        if not 0 <= value <= 1:
            raise ValueError(f"{name}: expected a fraction from 0 to 1, got {value}")
    if not settings.max_grad_norm >= 0 or not math.isfinite(settings.max_grad_norm):
        raise ValueError(f"max_grad_norm: expected 0 (no clipping) or a positive number, got {settings.max_grad_norm}")
    if settings.checkpoint_every < 0:
        raise ValueError(f"checkpoint_every: expected 0 (no checkpoints) or a number of steps, got {settings.checkpoint_every}")
    unknown = [t for t in settings.targets if not isinstance(t, str) or not t]
    if not settings.targets or unknown:
        raise ValueError(f"targets: expected layer names such as {adapters.DEFAULT_TARGETS[0]!r}, got {settings.targets!r}")
    if settings.resolution % RESOLUTION_MULTIPLE or not 0 < settings.resolution <= pipeline.max_resolution:
        raise ValueError(
            f"resolution: expected a multiple of {RESOLUTION_MULTIPLE} up to {pipeline.max_resolution}, got {settings.resolution}"
        )


def check_resume(resume, settings: TrainingSettings) -> None:
    """A saved adapter to continue from must have the rank and target layers the settings ask for."""
    if resume is None:
        return
    if resume.rank != settings.rank or tuple(resume.targets) != tuple(settings.targets):
        raise ValueError(
            f"resume_from: the saved adapter has rank {resume.rank} on {list(resume.targets)}; the settings ask for rank "
            f"{settings.rank} on {list(settings.targets)}: set rank and target to the saved adapter's to continue it")


def check_task(task: str, prompt: str) -> None:
    if not task.strip():
        raise ValueError("task: give the new task a name, e.g. 'highlight'")
    if task in TASK_PROMPTS:
        raise ValueError(f"task: {task!r} is a built-in task; give the new task another name")
    if not prompt.strip():
        raise ValueError("prompt: give the new task a prompt, e.g. '[[image2highlight]]'")


def release_inference_tensors(module: torch.nn.Module) -> None:
    """Turn parameters and buffers made under ``torch.inference_mode()`` (as ComfyUI loads models) into ordinary
    tensors, in place and bitwise equal: autograd cannot save inference tensors for the backward pass."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_inference():
            twin = torch.nn.Parameter(tensor.detach().clone(), tensor.requires_grad) if isinstance(tensor, torch.nn.Parameter) else tensor.detach().clone()
            torch.utils.swap_tensors(tensor, twin)


def example_latents(pipeline: DicePipeline, batch, resolution: int) -> torch.Tensor:
    pipeline.prepare("vae")
    return torch.cat([pipeline.encode_image(preprocess(item[None], resolution)).float().cpu() for item in batch])


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def auto_learning_rate(transformer) -> float:
    """diffusers' SD3 LoRA rate scaled by the transformer's width: ``1e-4 · 1536 / width``. Adam's stable step for a
    layer of width n shrinks as 1/n (μP; LoRA+ for adapters), so one rate cannot serve models of every width: this
    gives diffusers' 1e-4 on SD3-medium (width 1536) and 1.2e-3 on the miniature (width 128), the rate its
    measurements favour (docs/adapters.md)."""
    config = transformer.config
    return REFERENCE_LEARNING_RATE * REFERENCE_WIDTH / (config.num_attention_heads * config.attention_head_dim)


def train_adapter(
    pipeline: DicePipeline,
    images,
    targets,
    task: str,
    prompt: str,
    settings: TrainingSettings = TrainingSettings(),
    callback: Optional[Callable[[int, int, float], None]] = None,
    resume: Optional[adapters.TaskAdapter] = None,
    checkpoint: Optional[Callable[[adapters.TaskAdapter], None]] = None,
):
    """Train a new task's adapter → (a pipeline that answers it and every task ``pipeline`` answers, the
    TaskAdapter, the loss of every step). ``pipeline`` itself is not changed. ``images``/``targets``: lists (or
    batches) of (H, W, 3) tensors in [0, 1]. ``callback(step, steps, loss)`` runs after every step (else the
    pipeline's host sees the progress); raise from it to interrupt. ``resume``: a saved adapter to continue;
    ``checkpoint(adapter)`` runs every ``settings.checkpoint_every`` steps (not after the last)."""
    images, targets = list(images), list(targets)
    check_task(task, prompt)
    check_examples(images, targets)
    check_settings(settings, pipeline)
    check_resume(resume, settings)
    if not settings.learning_rate:
        settings = replace(settings, learning_rate=auto_learning_rate(pipeline.base_transformer))
    with torch.inference_mode(False), torch.enable_grad():
        return _train(pipeline, images, targets, task, prompt, settings, callback, resume, checkpoint)


def _train(pipeline, images, targets, task, prompt, settings, callback, resume=None, checkpoint=None):
    existing = [a for _, a in pipeline.adapters.values() if a.task != task]
    identity = adapters.checkpoint_identity(pipeline.base_transformer)
    start = dict(resume.weights) if resume is not None else {}
    done_before = int(resume.settings.get("steps_done", resume.settings.get("steps", 0))) if resume is not None else 0
    fresh = adapters.TaskAdapter(task, prompt, settings.rank, float(settings.rank), tuple(settings.targets), start, identity, asdict(settings))
    encoded = pipeline.encode_prompts([prompt, ""] if settings.prompt_dropout > 0 else [prompt])
    embeds, pooled = encoded[prompt]
    empty_embeds, empty_pooled = encoded.get("", encoded[prompt])
    cond = example_latents(pipeline, images, settings.resolution)
    clean = example_latents(pipeline, targets, settings.resolution)

    pipeline.prepare("denoiser")
    release_inference_tensors(pipeline.base_transformer)
    release_inference_tensors(pipeline.point_encoder)
    trainee = pipeline.with_adapters(existing + [fresh], seed=settings.seed)
    transformer = trainee.transformer
    slot = trainee.adapters[task][0]
    if settings.full_fine_tune:  # the base weights (shared with ``pipeline``'s transformer) train; the adapter stays 0
        params = [p for p in pipeline.base_transformer.parameters() if p.dtype.is_floating_point]
    else:
        params = adapters.lora_parameters(transformer, slot)
    for p in params:
        p.requires_grad_(True)
    adapters.activate(transformer, slot, 1.0)

    device, dtype = transformer.device, pipeline.dtype
    coords, labels = point_slots([], 1, 1)
    with torch.no_grad():
        points = pipeline.point_encoder(coords.to(device), labels.to(device)).to(dtype)
    embeds, pooled = embeds.to(device, dtype), pooled.to(device, dtype)
    empty_embeds, empty_pooled = empty_embeds.to(device, dtype), empty_pooled.to(device, dtype)
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    shift = float(pipeline.scheduler_config.get("shift", 1.0))
    autocast = device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast and dtype == torch.float16)  # fp16 gradients underflow
    order, losses = [], []
    transformer.train()
    try:
        for step in range(settings.steps):
            picks = []
            while len(picks) < settings.batch_size:
                if not order:
                    order = torch.randperm(len(images), generator=generator).tolist()
                picks.append(order.pop())
            z = clean[picks]
            noise = torch.randn(z.shape, generator=generator)
            n = len(picks)
            sigmas = sample_sigmas(n, settings, shift, generator)
            dropped = (torch.rand(n, generator=generator) < settings.prompt_dropout).view(-1, 1, 1).to(device)
            s = sigmas.view(-1, 1, 1, 1)
            noisy = ((1 - s) * z + s * noise).to(device, dtype)
            velocity = (noise - z).to(device)
            text = torch.where(dropped, empty_embeds, embeds)
            text_pooled = torch.where(dropped[:, 0], empty_pooled, pooled)
            point_tokens = torch.where(dropped, torch.zeros_like(points), points)  # unconditioned: zero point tokens
            with torch.autocast(device.type, dtype=dtype, enabled=autocast):
                prediction = diception_forward(
                    transformer, noisy, cond[picks].to(device, dtype), text, text_pooled, point_tokens,
                    (sigmas * 1000).to(device), checkpointing=settings.checkpointing,  # timestep in float32
                )
            loss = flow_loss(prediction.float(), velocity.float(), sigmas.to(device), settings.precondition)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if settings.max_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
            if checkpoint and settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
                checkpoint(snapshot(fresh, transformer, slot, settings, len(images), done_before + step + 1, losses))
            if callback:
                callback(step + 1, settings.steps, losses[-1])
            else:  # the pipeline's host: ComfyUI's progress bar and interrupt
                pipeline.host.progress(step + 1, settings.steps)
    finally:
        transformer.eval()
        transformer.requires_grad_(False)
        pipeline.base_transformer.requires_grad_(False)
        adapters.activate(transformer, None)
    final = snapshot(fresh, transformer, slot, settings, len(images), done_before + settings.steps, losses)
    fresh.weights, fresh.settings = final.weights, final.settings
    return trainee, fresh, losses


def sample_sigmas(n: int, settings: TrainingSettings, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Shifted logit-normal σ, with ``one_step_fraction`` of them at σ = 1 exactly (float32, on the CPU)."""
    u = torch.sigmoid(settings.logit_mean + settings.logit_std * torch.randn(n, generator=generator))
    one_step = torch.rand(n, generator=generator) < settings.one_step_fraction
    return torch.where(one_step, torch.ones(n), shift_sigmas(u, shift))


def flow_loss(prediction: torch.Tensor, velocity: torch.Tensor, sigmas: torch.Tensor, precondition: bool) -> torch.Tensor:
    """Mean squared velocity error, weighted by σ² when ``precondition`` (= the error of the implied clean latent)."""
    error = (prediction - velocity) ** 2
    if precondition:
        error = error * sigmas.view(-1, *[1] * (error.ndim - 1)) ** 2
    return error.mean()


def snapshot(fresh, transformer, slot, settings, examples: int, steps_done: int, losses) -> adapters.TaskAdapter:
    """The adapter as trained so far (its weights copied), with the settings and progress in its metadata."""
    recent = losses[-min(len(losses), 50):]
    info = {**asdict(settings), "examples": examples, "steps_done": steps_done, "final_loss": losses[-1],
            "recent_loss": sum(recent) / len(recent)}
    return adapters.TaskAdapter(fresh.task, fresh.prompt, fresh.rank, fresh.alpha, fresh.targets,
                                adapters.adapter_weights(transformer, slot), fresh.checkpoint, info)
