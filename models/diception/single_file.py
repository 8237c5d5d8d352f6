"""SD3-medium as one file (``sd3_medium*.safetensors`` in ComfyUI's ``models/checkpoints``), fully offline.

The MMDiT (``model.diffusion_model.*``) and VAE (``first_stage_model.*``) are converted by diffusers'
single-file loaders with the SD3-medium configs shipped in ``configs/sd3-medium`` (no hub access). Text
encoders are read from the same file when it includes them (``text_encoders.clip_l/clip_g/t5xxl.*``,
the ``incl_clips`` variants) and need tokenizer folders (ComfyUI ships CLIP's and T5's); they are only
built when a prompt is not in the prompt cache.
"""

from pathlib import Path

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from safetensors import safe_open

from ..weights import WeightsError

SD3_MEDIUM_CONFIGS = Path(__file__).resolve().parent / "configs" / "sd3-medium"
TRANSFORMER_PREFIX, VAE_PREFIX = "model.diffusion_model.", "first_stage_model."


def single_file_keys(path: Path) -> set:
    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except Exception as e:
        raise WeightsError(f"could not read {path}: not a readable .safetensors single-file checkpoint ({e})") from None


def load_single_file(path, dtype: torch.dtype, configs=SD3_MEDIUM_CONFIGS):
    """→ (transformer, vae) from an SD3 single-file checkpoint, configs from ``configs`` (a folder)."""
    path = Path(path)
    keys = single_file_keys(path)
    for part, prefix in (("MMDiT", TRANSFORMER_PREFIX), ("VAE", VAE_PREFIX)):
        if not any(k.startswith(prefix) for k in keys):
            raise WeightsError(f"{path.name} is not an SD3 single-file checkpoint: it has no {part} weights ({prefix}*)")
    kw = dict(config=str(configs), torch_dtype=dtype, local_files_only=True)
    transformer = SD3Transformer2DModel.from_single_file(str(path), subfolder="transformer", **kw)
    vae = AutoencoderKL.from_single_file(str(path), subfolder="vae", **kw)
    return transformer, vae
