"""The DICEPTION pipeline: image (+ task, points) → the task's answer as an RGB image."""

import logging
import math
import numbers
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from ..host import Host
from ..inputs import InputError, check_images
from ..points import MAX_POINTS
from ..rows import to_uint8
from . import adapter as adapters
from .batch_points import parse_batch_points
from .prompts import PromptCache, encode_prompt
from .tasks import POINT_TASK, TASK_PROMPTS, task_prompt
from .transformer import diception_forward

RESOLUTION_MULTIPLE = 16  # VAE factor 8 × patch size 2
POINT_ORDERS = ("yx", "xy")
log = logging.getLogger(__name__)


def first_parameter(module: torch.nn.Module) -> torch.Tensor:
    """The first parameter: its device and dtype are the module's. (diffusers' ``ModelMixin.device`` / ``.dtype``
    walk every submodule on each read: read once per call here.)"""
    return next(module.parameters())


class DicePipeline:
    """Holds the model parts; ``check_inputs`` checks a run's inputs, ``__call__`` runs one task on a batch of images.

    The ``host`` (``models.host.Host``) is told before a part runs (``prepare("text_encoders" | "vae" |
    "denoiser", modules)``) and after the text encoders are done (``release``), so that ComfyUI can move parts
    to its device; it sees the progress and may interrupt. Each part runs on the device its parameters are on.
    """

    def __init__(self, transformer, point_encoder, vae, scheduler_config: dict, text_encoder_source, prompt_cache_root,
                 host: Optional[Host] = None):
        self.transformer = transformer
        self.point_encoder = point_encoder
        self.vae = vae
        self.scheduler_config = scheduler_config
        self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)  # built once, reset per run
        self.text_encoder_source = text_encoder_source
        self.prompt_cache = PromptCache(prompt_cache_root, text_encoder_source.identity)
        self.host = host if host is not None else Host()
        self.base_transformer = transformer  # without adapters; adapted pipelines share its parameters
        self.adapters = {}  # task name → (PEFT slot name, TaskAdapter)

    def prepare(self, part: str) -> None:
        """Have the host put ``part`` ("denoiser" or "vae") on its device. The host manages the base weights (one
        set, whatever adapters are attached); the adapters' own small weights follow them here."""
        if part == "vae":
            self.host.prepare("vae", [self.vae])
            return
        self.host.prepare("denoiser", [self.base_transformer, self.point_encoder])
        if self.transformer is not self.base_transformer:
            adapters_follow(self.transformer, first_parameter(self.base_transformer).device)

    def with_adapters(self, task_adapters, seed: int = 0) -> "DicePipeline":
        """A pipeline that also answers the adapters' tasks: a shared-weights copy of the transformer carries them,
        this pipeline (and the transformer it runs) stays as it is. Adapters with no weights start fresh from ``seed``."""
        transformer = adapters.shared_copy(self.base_transformer)
        adapted = DicePipeline(transformer, self.point_encoder, self.vae, self.scheduler_config, self.text_encoder_source, ".",
                               self.host)
        adapted.prompt_cache = self.prompt_cache
        adapted.base_transformer = self.base_transformer
        for i, adapter in enumerate(task_adapters):
            if adapter.task in TASK_PROMPTS:
                raise ValueError(f"task: {adapter.task!r} is a built-in task; give the new task another name")
            slot = adapters.slot_name(i)
            adapters.attach(transformer, slot, adapter.rank, adapter.targets, adapter.weights or None, seed)
            adapted.adapters[adapter.task] = (slot, adapter)
        transformer.requires_grad_(False)
        adapters.activate(transformer, None)
        return adapted

    def prompt_for(self, task: str, category: str = "") -> str:
        if task in self.adapters:
            return self.adapters[task][1].prompt
        if task not in TASK_PROMPTS:
            raise InputError(
                f"task: unknown task {task!r}; this model answers the built-in tasks {list(TASK_PROMPTS)} and the adapted "
                f"tasks {list(self.adapters)} (add one with Train or Load DICEPTION Adapter)"
            )
        return task_prompt(task, category)

    def activate(self, task: str) -> None:
        """Turn on the adapter of ``task``; built-in tasks run with every adapter off (the base model's forward)."""
        if not self.adapters:
            return
        slot, adapter = self.adapters.get(task, (None, None))
        adapters.activate(self.transformer, slot, adapter.strength if adapter else 1.0)

    @property
    def dtype(self) -> torch.dtype:
        return first_parameter(self.base_transformer).dtype

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def max_resolution(self) -> int:
        """The largest square the transformer's cropped positional embedding covers (SD3-medium: 3072)."""
        config = self.transformer.config
        return config.pos_embed_max_size * config.patch_size * self.vae_factor

    # --- stages -------------------------------------------------------------------------------
    def encode_prompts(self, prompts) -> dict:
        """{prompt: (prompt_embeds, pooled)}; the text encoders are built only for prompts not cached."""
        found = {p: self.prompt_cache.get(p) for p in dict.fromkeys(prompts)}
        missing = [p for p, hit in found.items() if hit is None]
        if missing:
            log.info("DICEPTION: building the text encoders for %d prompt(s) not in the prompt cache: %s", len(missing), missing)
            encoders = self.text_encoder_source.load()
            try:
                self.host.prepare("text_encoders", encoders.modules())
                for prompt in missing:
                    found[prompt] = encode_prompt(encoders, prompt)
                    self.prompt_cache.put(prompt, *found[prompt])
            finally:
                self.host.release("text_encoders", encoders.modules())
                del encoders
        return found

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """pixels (B, 3, R, R) in [−1, 1] → condition latents. Posterior mode, or ``mean + std·noise``."""
        vae, weight = self.vae, first_parameter(self.vae)
        posterior = vae.encode(pixels.to(weight.device, weight.dtype)).latent_dist
        latents = posterior.mode() if noise is None else posterior.mean + posterior.std * noise.to(posterior.std)
        return ((latents - vae.config.shift_factor) * vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae, weight = self.vae, first_parameter(self.vae)
        latents = latents.to(weight.device, weight.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        return (vae.decode(latents, return_dict=False)[0] / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def denoise(self, latents, cond_latents, embeds, pooled, point_embeds, steps, guidance, callback=None, record=None):
        """Flow-matching Euler with the SD3 scheduler; CFG when ``guidance > 1`` (uncond = empty prompt,
        zero point tokens, same condition image). ``embeds``/``pooled``/``point_embeds`` are
        [uncond, cond] pairs under CFG. ``record(name, tensor)`` sees every step's tensors."""
        weight = first_parameter(self.base_transformer)
        device, dtype = weight.device, weight.dtype
        cfg = guidance > 1.0
        scheduler = self.scheduler
        scheduler.set_timesteps(steps, device=device)  # also resets the step index of the previous run
        latents = latents.to(device, dtype)
        cond = cond_latents.to(device)
        if cfg:
            cond = torch.cat([cond, cond])
            embeds, pooled, point_embeds = (torch.cat(pair) for pair in (embeds, pooled, point_embeds))
        embeds, pooled, point_embeds = (t.to(device, dtype) for t in (embeds, pooled, point_embeds))
        for i, t in enumerate(scheduler.timesteps):
            model_input = torch.cat([latents, latents]) if cfg else latents
            raw = diception_forward(self.transformer, model_input, cond, embeds, pooled, point_embeds, t.expand(model_input.shape[0]))
            guided = raw
            if cfg:
                uncond, text = raw.chunk(2)
                guided = uncond + guidance * (text - uncond)
            latents_in = latents
            latents = scheduler.step(guided, t, latents, return_dict=False)[0]
            if record:
                for name, value in (("noise_pred_raw", raw), ("noise_pred_guided", guided), ("latents_in", latents_in), ("latents_out", latents)):
                    record(f"step{i}.{name}", value)
            if callback:
                callback(i + 1, steps)
        return latents

    # --- the whole run ------------------------------------------------------------------------
    def check_inputs(self, images, task: str, category: str = "", points=(), steps: int = 28, guidance: float = 2.0,
                     resolution: int = 768, point_order: str = "yx", batch_size: int = 4):
        """Every check of a run, before any work: raises ``InputError`` naming the input and what was expected.
        Returns the prompt and the points, one list of pixel (x, y) per image (``parse_batch_points``: JSON text
        or lists). Points given to a task other than point segmentation are not an error (a graph's point picker
        keeps them when the task changes): they are logged and left out."""
        check_images("images", images, channels=3)
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise InputError(f"steps: expected a whole number of denoising steps ≥ 1, got {steps!r}")
        if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not math.isfinite(guidance):
            raise InputError(f"guidance: expected a finite number (1.0 or less: no classifier-free guidance), got {guidance!r}")
        if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) or resolution < RESOLUTION_MULTIPLE:
            raise InputError(f"resolution: expected a whole number of pixels ≥ {RESOLUTION_MULTIPLE}, got {resolution!r}")
        if resolution % RESOLUTION_MULTIPLE:
            raise InputError(f"resolution: must be a multiple of {RESOLUTION_MULTIPLE}, got {resolution}")
        if resolution > self.max_resolution:
            raise InputError(
                f"resolution: {resolution} is more than this model supports ({self.max_resolution} at most: "
                f"pos_embed_max_size {self.transformer.config.pos_embed_max_size} × patch size "
                f"{self.transformer.config.patch_size} × VAE factor {self.vae_factor}); DICEPTION was trained at 768"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InputError(f"batch_size: expected at least 1 image per call, got {batch_size!r}")
        if point_order not in POINT_ORDERS:
            raise InputError(f"point_order: expected one of {list(POINT_ORDERS)}, got {point_order!r}")
        prompt = self.prompt_for(task, category)
        b, h, w, _ = images.shape
        if task != POINT_TASK:
            if has_points(points):
                log.info("DICEPTION: task %r ignores the points %s (only %r uses points)", task, str(points).strip(), POINT_TASK)
            return prompt, [[]] * b
        per_image = parse_batch_points(points, w, h, b)
        for i, image_points in enumerate(per_image):
            if not image_points:
                where = f" (image {i} of the batch)" if b > 1 else ""
                raise InputError(f"points: the {POINT_TASK!r} task needs 1 to {MAX_POINTS} points on the image{where}")
        return prompt, per_image

    def __call__(
        self,
        images: torch.Tensor,
        task: str,
        category: str = "",
        points=(),
        steps: int = 28,
        guidance: float = 2.0,
        seed: int = 0,
        resolution: int = 768,
        point_order: str = "yx",
        callback: Optional[Callable[[int, int], None]] = None,
        batch_size: int = 4,
    ) -> torch.Tensor:
        """images (B, H, W, 3) in [0, 1] → answers (B, H, W, 3) in [0, 1] at the input size.

        ``points`` are pixel (x, y) pairs of the input image (point segmentation only): one list for every
        image, or a list of B lists, one per image (or the same as KJNodes JSON text). Images are VAE-encoded,
        denoised and decoded ``batch_size`` at a time. The noise is drawn on the CPU from ``seed`` for the whole
        batch, so the same seed gives the same answer on any device and whatever ``batch_size`` is. Progress,
        counted in image-steps, goes to the host after every denoising step of every chunk (or to ``callback(done,
        total)`` when given; raise from it to interrupt).
        """
        prompt, per_image = self.check_inputs(images, task, category, points, steps, guidance, resolution, point_order,
                                              batch_size)
        progress = callback or self.host.progress
        b, h, w, _ = images.shape
        cfg = guidance > 1.0
        embeds = self.encode_prompts([prompt, ""] if cfg else [prompt])
        slots = [point_slots(p, w, h, point_order) for p in per_image]
        self.prepare("denoiser")
        self.activate(task)
        device = first_parameter(self.base_transformer).device
        point_embeds = self.point_encoder(torch.cat([c for c, _ in slots]).to(device), torch.cat([l for _, l in slots]).to(device))
        latent_size = resolution // self.vae_factor
        noise = initial_noise(seed, (b, self.transformer.config.in_channels, latent_size, latent_size))

        total = b * steps
        answers = torch.empty(b, h, w, 3)  # the output, filled chunk by chunk (no concatenated copy)
        for start in range(0, b, batch_size):
            self.host.interrupt()
            stop = min(b, start + batch_size)
            pixels = torch.cat([preprocess(images[i : i + 1], resolution) for i in range(start, stop)])
            self.prepare("vae")
            cond_latents = self.encode_image(pixels)
            self.prepare("denoiser")
            inputs = chunk_inputs(embeds, prompt, point_embeds[start:stop], cfg)
            step_callback = lambda done, _, start=start, n=stop - start: progress(start * steps + done * n, total)  # noqa: E731
            latents = self.denoise(noise[start:stop], cond_latents, *inputs, steps=steps, guidance=guidance, callback=step_callback)
            self.prepare("vae")
            postprocess(self.decode(latents), h, w, answers[start:stop])
        return answers


def has_points(points) -> bool:
    """Whether ``points`` (JSON text or lists) holds anything: "", "[]", [] and None do not."""
    if isinstance(points, str):
        return points.strip() not in ("", "[]")
    return bool(points)


def adapters_follow(transformer: torch.nn.Module, device: torch.device) -> None:
    """Move the LoRA weights of an adapted transformer (its only parameters not shared with the base) to ``device``,
    where the host put the base weights."""
    for name, parameter in transformer.named_parameters():
        if "lora_" in name and parameter.device != device:
            parameter.data = parameter.data.to(device)


def chunk_inputs(embeds: dict, prompt: str, point_embeds: torch.Tensor, cfg: bool):
    """The text, pooled and point inputs of ``denoise`` for a chunk of ``len(point_embeds)`` images."""
    n = point_embeds.shape[0]
    text, pooled = (t.expand(n, *t.shape[1:]) for t in embeds[prompt])
    if not cfg:
        return text, pooled, point_embeds
    uncond, uncond_pooled = (t.expand(n, *t.shape[1:]) for t in embeds[""])
    return (uncond, text), (uncond_pooled, pooled), (torch.zeros_like(point_embeds), point_embeds)


def initial_noise(seed: int, shape) -> torch.Tensor:
    """Gaussian noise drawn on the CPU (float32) like ComfyUI does, independent of the device."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


def point_slots(points, width: int, height: int, order: str = "yx"):
    """Pixel points → the 5 normalised slots (1, 5, 2) and labels (1, 5).

    ``order='yx'`` stores (row, column) as DICEPTION's training data does; ``'xy'`` stores (x, y) as the
    official inference.py does. The official code disagrees with itself; see the README.
    """
    if order not in POINT_ORDERS:
        raise InputError(f"point_order: expected 'yx' or 'xy', got {order!r}")
    coords = torch.zeros(1, MAX_POINTS, 2)
    labels = torch.zeros(1, MAX_POINTS)
    for i, (x, y) in enumerate(points):
        nx, ny = x / width, y / height
        coords[0, i] = torch.tensor([ny, nx] if order == "yx" else [nx, ny])
        labels[0, i] = 1
    return coords, labels


def preprocess(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """(1, H, W, 3) in [0, 1] → (1, 3, R, R) in [−1, 1], resized with PIL's Lanczos as the official code."""
    array = to_uint8(image[0])  # a few rows at a time: no full-size float temporaries
    resized = Image.fromarray(array).resize((resolution, resolution), Image.LANCZOS)
    del array
    tensor = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    return (tensor - 0.5) * 2


def postprocess(answer: torch.Tensor, height: int, width: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(n, 3, R, R) in [0, 1] → (n, H, W, 3) in [0, 1] at the input size (antialiased bicubic, in float), written
    into ``out`` when given. One channel of one image is resized at a time (bicubic treats them independently):
    the only full-size temporary is one (H, W) plane."""
    answer = answer.float().cpu()
    n, channels = answer.shape[:2]
    out = torch.empty(n, height, width, channels) if out is None else out
    for i in range(n):
        for c in range(channels):
            plane = answer[i : i + 1, c : c + 1]
            if plane.shape[-2:] != (height, width):
                plane = F.interpolate(plane, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
            out[i, :, :, c] = plane[0, 0].clamp_(0, 1)
            del plane
    return out
