"""DICEPTION (arXiv 2502.17157): one SD3 transformer answering perception tasks as RGB images."""

from pathlib import Path

from .batch_points import parse_batch_points
from .checkpoint import convert, load_checkpoint
from .loading import (
    TextEncoderSource,
    apply_checkpoint,
    check_base_folder,
    load_scheduler_config,
    load_transformer,
    load_vae,
)
from .pipeline import DicePipeline
from .single_file import SD3_MEDIUM_CONFIGS, SingleFileTextEncoders, load_single_file
from .tasks import COCO_CATEGORIES, POINT_TASK, SEMANTIC_TASK, TASK_PROMPTS, parse_points, task_prompt


def load_pipeline(base, checkpoint, dtype, prompt_cache_root, tokenizer_dirs=None, configs=SD3_MEDIUM_CONFIGS):
    """DICEPTION from an SD3-medium base and a DICEPTION checkpoint (.pth / .safetensors).

    ``base`` is a diffusers folder (``stable-diffusion-3-medium-diffusers`` layout) or a single-file
    checkpoint (``sd3_medium*.safetensors``; ``configs`` and ``tokenizer_dirs`` {"clip", "t5"} serve it offline).
    """
    if Path(base).is_file():
        transformer, vae = load_single_file(base, dtype, configs)
        transformer, point_encoder = apply_checkpoint(transformer, checkpoint, dtype, base)
        scheduler = load_scheduler_config(Path(configs))
        text = SingleFileTextEncoders(base, dtype, tokenizer_dirs or {}, configs)
    else:
        folder = check_base_folder(base)
        transformer, point_encoder = load_transformer(folder, checkpoint, dtype)
        vae, scheduler, text = load_vae(folder, dtype), load_scheduler_config(folder), TextEncoderSource(folder, dtype)
    return DicePipeline(transformer, point_encoder, vae, scheduler, text, prompt_cache_root)
