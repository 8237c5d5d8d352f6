"""Few-shot fine-tuning: teach DICEPTION a new task from example (image, target answer) pairs with a LoRA adapter.

SD3's rectified-flow objective in DICEPTION's layout: the example image's latent (VAE posterior mode) is the clean
condition; the target's latent ``z`` is noised as ``x_t = (1 − σ)·z + σ·ε`` and the transformer, called with timestep
``σ·1000``, predicts the velocity ``ε − z`` on the target tokens. ``σ`` is logit-normal (mean 0, std 1, as diffusers'
SD3 training) and shifted as the model's scheduler shifts it: ``σ' = s·σ / (1 + (s − 1)·σ)``. The task prompt is
encoded once (through the prompt cache); the point slots are empty, as for every task without points.

Only the adapter trains (fp32 weights; bf16/fp16 autocast on GPUs); AdamW; every random draw comes from ``seed``
on the CPU, so the same seed on the same device gives the same adapter.
"""

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import adapter as adapters
from .pipeline import RESOLUTION_MULTIPLE, DicePipeline, point_slots, preprocess
from .tasks import TASK_PROMPTS
from .transformer import diception_forward

ASPECT_TOLERANCE = 0.02  # a target whose aspect ratio differs more from its image's is refused, else resized


@dataclass
class TrainingSettings:
    steps: int = 300
    learning_rate: float = 1e-4
    rank: int = adapters.DEFAULT_RANK
    targets: tuple = adapters.DEFAULT_TARGETS
    batch_size: int = 1
    resolution: int = 768
    seed: int = 0
    checkpointing: bool = True
    weight_decay: float = 1e-4
    logit_mean: float = 0.0
    logit_std: float = 1.0


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
    if not settings.learning_rate > 0 or not math.isfinite(settings.learning_rate):
        raise ValueError(f"learning_rate: expected a positive number, got {settings.learning_rate}")
    if settings.resolution % RESOLUTION_MULTIPLE or not 0 < settings.resolution <= pipeline.max_resolution:
        raise ValueError(
            f"resolution: expected a multiple of {RESOLUTION_MULTIPLE} up to {pipeline.max_resolution}, got {settings.resolution}"
        )


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


def train_adapter(
    pipeline: DicePipeline,
    images,
    targets,
    task: str,
    prompt: str,
    settings: TrainingSettings = TrainingSettings(),
    callback: Optional[Callable[[int, int, float], None]] = None,
):
    """Train a new task's adapter → (a pipeline that answers it and every task ``pipeline`` answers, the
    TaskAdapter, the loss of every step). ``pipeline`` itself is not changed. ``images``/``targets``: lists (or
    batches) of (H, W, 3) tensors in [0, 1]. ``callback(step, steps, loss)`` runs after every step (else the
    pipeline's host sees the progress); raise from it to interrupt."""
    images, targets = list(images), list(targets)
    check_task(task, prompt)
    check_examples(images, targets)
    check_settings(settings, pipeline)
    with torch.inference_mode(False), torch.enable_grad():
        return _train(pipeline, images, targets, task, prompt, settings, callback)


def _train(pipeline, images, targets, task, prompt, settings, callback):
    existing = [a for _, a in pipeline.adapters.values() if a.task != task]
    identity = adapters.checkpoint_identity(pipeline.base_transformer)
    fresh = adapters.TaskAdapter(task, prompt, settings.rank, float(settings.rank), tuple(settings.targets), {}, identity, asdict(settings))
    embeds, pooled = pipeline.encode_prompts([prompt])[prompt]
    cond = example_latents(pipeline, images, settings.resolution)
    clean = example_latents(pipeline, targets, settings.resolution)

    pipeline.prepare("denoiser")
    release_inference_tensors(pipeline.base_transformer)
    release_inference_tensors(pipeline.point_encoder)
    trainee = pipeline.with_adapters(existing + [fresh], seed=settings.seed)
    transformer = trainee.transformer
    slot = trainee.adapters[task][0]
    params = [p for n, p in transformer.named_parameters() if f".{slot}." in n and "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    adapters.activate(transformer, slot, 1.0)

    device, dtype = transformer.device, pipeline.dtype
    coords, labels = point_slots([], 1, 1)
    with torch.no_grad():
        points = pipeline.point_encoder(coords.to(device), labels.to(device)).to(dtype)
    embeds, pooled = embeds.to(device, dtype), pooled.to(device, dtype)
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    shift = float(pipeline.scheduler_config.get("shift", 1.0))
    autocast = device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
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
            u = torch.sigmoid(settings.logit_mean + settings.logit_std * torch.randn(len(picks), generator=generator))
            sigmas = shift_sigmas(u, shift)
            s = sigmas.view(-1, 1, 1, 1)
            noisy = ((1 - s) * z + s * noise).to(device, dtype)
            velocity = (noise - z).to(device)
            n = len(picks)
            with torch.autocast(device.type, dtype=dtype, enabled=autocast):
                prediction = diception_forward(
                    transformer, noisy, cond[picks].to(device, dtype), embeds.expand(n, -1, -1), pooled.expand(n, -1),
                    points.expand(n, -1, -1), (sigmas * 1000).to(device, dtype), checkpointing=settings.checkpointing,
                )
            loss = F.mse_loss(prediction.float(), velocity.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if callback:
                callback(step + 1, settings.steps, losses[-1])
            else:  # the pipeline's host: ComfyUI's progress bar and interrupt
                pipeline.host.progress(step + 1, settings.steps)
    finally:
        transformer.eval()
        transformer.requires_grad_(False)
        adapters.activate(transformer, None)
    fresh.weights = adapters.adapter_weights(transformer, slot)
    fresh.settings = {**asdict(settings), "examples": len(images), "final_loss": losses[-1]}
    return trainee, fresh, losses
