"""DICEPTION (arXiv 2502.17157): one SD3 transformer answering perception tasks as RGB images."""

from .checkpoint import convert, load_checkpoint
from .loading import TextEncoderSource, check_base_folder, load_scheduler_config, load_transformer, load_vae
from .pipeline import DicePipeline
from .tasks import COCO_CATEGORIES, POINT_TASK, SEMANTIC_TASK, TASK_PROMPTS, parse_points, task_prompt


def load_pipeline(base_folder, checkpoint, dtype, prompt_cache_root) -> DicePipeline:
    """Everything DICEPTION needs from an SD3 diffusers folder and a DICEPTION checkpoint (.pth/.safetensors)."""
    folder = check_base_folder(base_folder)
    transformer, point_encoder = load_transformer(folder, checkpoint, dtype)
    return DicePipeline(
        transformer,
        point_encoder,
        load_vae(folder, dtype),
        load_scheduler_config(folder),
        TextEncoderSource(folder, dtype),
        prompt_cache_root,
    )
