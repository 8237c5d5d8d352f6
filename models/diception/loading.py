"""Loading DICEPTION: an SD3-medium base (diffusers folder) plus the DICEPTION checkpoint."""

import json
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel

from ..weights import WeightsError
from .checkpoint import load_checkpoint, split_checkpoint
from .point_encoder import PointEncoder

log = logging.getLogger(__name__)
# Buffers that are not learned: diffusers builds ``pos_embed.pos_embed`` as a fixed 2-D sin-cos table
# (``get_2d_sincos_pos_embed``), so a checkpoint without it keeps the base model's, which is the same table.
FIXED_BUFFERS = ("pos_embed.pos_embed",)
DENOISER_PARTS = ("transformer", "vae", "scheduler")
TEXT_PARTS = ("text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3")


def check_base_folder(folder) -> Path:
    """An SD3 diffusers folder (``stable-diffusion-3-medium-diffusers`` layout) with every part DICEPTION uses."""
    folder = Path(folder)
    missing = [part for part in DENOISER_PARTS + TEXT_PARTS if not (folder / part).is_dir()]
    if missing:
        searched = ", ".join(str(folder / p) for p in missing)
        raise WeightsError(
            f"base model {folder} is not a complete SD3 diffusers folder: missing {missing} (searched: {searched}). "
            "Download stabilityai/stable-diffusion-3-medium-diffusers into ComfyUI/models/diception/."
        )
    return folder


def load_transformer(folder: Path, checkpoint, dtype: torch.dtype):
    """The SD3 transformer of a diffusers folder with DICEPTION's weights applied, and the point encoder."""
    transformer = SD3Transformer2DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=dtype)
    return apply_checkpoint(transformer, checkpoint, dtype, folder)


def apply_checkpoint(transformer, checkpoint, dtype: torch.dtype, base):
    """Load DICEPTION's transformer weights strictly (the official ``strict=False`` hides missing keys) and
    build its point encoder → (transformer, point_encoder), both in eval mode without gradients."""
    name = Path(checkpoint).name
    transformer_sd, point_sd = split_checkpoint(load_checkpoint(checkpoint))
    try:
        result = transformer.load_state_dict(transformer_sd, strict=False)
    except RuntimeError as e:  # "size mismatch for <key>: …"
        raise WeightsError(f"{name} does not fit the base transformer of {base}: {_mismatch(e)} (is the base model SD3-medium?)") from None
    missing = [k for k in result.missing_keys if k not in FIXED_BUFFERS]
    if missing or result.unexpected_keys:
        raise WeightsError(
            f"{name} does not fit the base transformer of {base}: "
            f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}, unexpected {result.unexpected_keys[:5]} "
            "(is the base model SD3-medium?)"
        )
    if result.missing_keys:
        log.info("DICEPTION: %s has no %s; the base model's (fixed sin-cos) buffer is used", name, result.missing_keys)
    if "point_embedder.2.weight" not in point_sd:
        raise WeightsError(f"{name}: the DICEPTION point encoder lacks 'point_embedder.2.weight'")
    point_encoder = PointEncoder(point_sd["point_embedder.2.weight"].shape[0])
    try:
        result = point_encoder.load_state_dict(point_sd, strict=False)
    except RuntimeError as e:
        raise WeightsError(f"{name}: the DICEPTION point encoder does not fit: {_mismatch(e)}") from None
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(f"{name}: the DICEPTION point encoder lacks {result.missing_keys}, has unexpected {result.unexpected_keys}")
    point_encoder.to(dtype)
    return transformer.eval().requires_grad_(False), point_encoder.eval().requires_grad_(False)


def _mismatch(error: RuntimeError) -> str:
    return " ".join(line.strip() for line in str(error).splitlines()[1:3]) or str(error)


def load_vae(folder: Path, dtype: torch.dtype) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype).eval().requires_grad_(False)


def load_scheduler_config(folder: Path) -> dict:
    return json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
