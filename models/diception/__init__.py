"""DICEPTION (arXiv 2502.17157): one SD3 transformer answering perception tasks as RGB images."""

import importlib
from pathlib import Path

import torch

# Light at import: what a host needs to describe the tasks (ComfyUI reads these when it starts).
from .batch_points import parse_batch_points
from .tasks import COCO_CATEGORIES, POINT_TASK, SEMANTIC_TASK, TASK_PROMPTS, parse_points, task_prompt

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}  # the weight dtypes a user may pick

# The rest imports diffusers / transformers (a second or more): loaded on first use, as diffusers loads its own
# pipelines (PEP 562 module ``__getattr__``), so that importing this package costs a host nothing at start-up.
_LAZY = {
    "convert": "checkpoint", "load_checkpoint": "checkpoint",
    "apply_checkpoint": "loading", "check_base_folder": "loading",
    "load_scheduler_config": "loading", "load_transformer": "loading", "load_vae": "loading",
    "DicePipeline": "pipeline",
    "SD3_MEDIUM_CONFIGS": "single_file", "load_single_file": "single_file",
    "TextEncoderFiles": "text_encoder_files", "choose_weights": "text_encoder_files",
    "classify_files": "text_encoder_files", "tokenizer_folders": "text_encoder_files",
}


def __getattr__(name):
    if name == "TEXT_ENCODERS":
        return importlib.import_module(".text_encoder_files", __name__).PARTS
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_pipeline(
    base, checkpoint, dtype, prompt_cache_root, tokenizer_dirs=None, configs=None,
    text_encoders=None, text_encoder_candidates=(), host=None,
):
    """DICEPTION from an SD3-medium base and a DICEPTION checkpoint (.pth / .safetensors).

    ``base`` is a diffusers folder (``stable-diffusion-3-medium-diffusers`` layout) or a single-file
    checkpoint (``sd3_medium*.safetensors``; ``configs`` and ``tokenizer_dirs`` {"clip", "t5"} serve it offline).
    Text encoders: ``text_encoders`` {"clip_l", "clip_g", "t5xxl": file or None} chosen files win; else the
    base's own; else the only file of that kind among ``text_encoder_candidates`` (see ``choose_weights``).
    ``host``: what runs the pipeline (``models.host.Host``; the default leaves every part where it is loaded).
    """
    from .loading import apply_checkpoint, check_base_folder, load_scheduler_config, load_transformer, load_vae
    from .pipeline import DicePipeline
    from .single_file import SD3_MEDIUM_CONFIGS, load_single_file
    from .text_encoder_files import TextEncoderFiles, choose_weights, tokenizer_folders

    configs = SD3_MEDIUM_CONFIGS if configs is None else configs
    chosen = {k: v for k, v in (text_encoders or {}).items() if v}
    if Path(base).is_file():
        transformer, vae = load_single_file(base, dtype, configs)
        transformer, point_encoder = apply_checkpoint(transformer, checkpoint, dtype, base)
        scheduler = load_scheduler_config(Path(configs))
    else:
        folder = check_base_folder(base)
        transformer, point_encoder = load_transformer(folder, checkpoint, dtype)
        vae, scheduler, configs = load_vae(folder, dtype), load_scheduler_config(folder), folder
    weights = choose_weights(base, chosen, text_encoder_candidates, configs)
    text = TextEncoderFiles(weights, dtype, tokenizer_folders(base, tokenizer_dirs or {}), configs, identity_files=[Path(base)])
    return DicePipeline(transformer, point_encoder, vae, scheduler, text, prompt_cache_root, host)
