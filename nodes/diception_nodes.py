"""ComfyUI nodes for DICEPTION: Load DICEPTION and Perceive Task."""

from ..models.diception import COCO_CATEGORIES, DTYPES, TASK_PROMPTS
from ..models.points import MAX_POINTS
from . import comfy_adapter, model_downloads, model_folders
from .comfy_host import ComfyHost

POINT_ORDERS = {"yx (training data)": "yx", "xy (official inference.py)": "xy"}


class DiceptionModel:
    """What flows along a DICEPTION_MODEL link: the pipeline, whose host (``ComfyHost``) loads its parts through
    ComfyUI's model management."""

    def __init__(self, pipeline):
        self.pipeline = pipeline


TEXT_ENCODER_TIPS = {
    kind: f"{name} from models/text_encoders (or models/clip), e.g. {example}; auto: the base model's own, else the only "
    f"{name} file there (read off the weights). Needed only when a task prompt is not in the prompt cache."
    for kind, name, example in (
        ("clip_l", "CLIP-L", "clip_l.safetensors"),
        ("clip_g", "CLIP-G", "clip_g.safetensors"),
        ("t5xxl", "T5-XXL", "t5xxl_fp16 / t5xxl_fp8_e4m3fn(_scaled).safetensors"),
    )
}


class LoadDiception:
    DESCRIPTION = (
        "Loads DICEPTION: an SD3-medium base (diffusers folder in models/diception, or a single-file sd3_medium*.safetensors "
        "in models/checkpoints) with the DICEPTION "
        "checkpoint (DICEPTION_v1.pth or .safetensors in models/diception). Text encoders (CLIP-L, CLIP-G, T5-XXL: the "
        "base model's own, or ComfyUI's separate files in models/text_encoders) are loaded only "
        "when a task prompt is not yet in the prompt cache. A listed file that is absent is downloaded on first use "
        "(download; SD3-medium needs an accepted licence and HF_TOKEN, see docs/weights.md)."
    )
    CATEGORY = "DICEPTION"
    FUNCTION = "load"
    RETURN_TYPES = ("DICEPTION_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("DICEPTION (SD3 transformer + point encoder + VAE), for Perceive Task",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "base_model": (
                    model_downloads.with_known(model_folders.diffusers_folders("diception") + model_folders.sd3_single_files(),
                                               "checkpoints", model_folders.SINGLE_FILE_PREFIX),
                    {"tooltip": "SD3-medium: a diffusers folder under models/diception, or an sd3_medium*.safetensors single file from models/checkpoints"},
                ),
                "checkpoint": (model_downloads.with_known(model_folders.weight_files("diception"), "diception"), {"tooltip": "DICEPTION_v1.pth or its .safetensors conversion"}),
                "dtype": (["auto"] + list(DTYPES), {"default": "auto", "tooltip": "auto: bf16 on GPUs that support it, else fp16; fp32 on CPU"}),
            },
            "optional": {
                **{kind: (["auto"] + model_downloads.with_known(model_folders.text_encoder_files(), "text_encoders"),
                          {"default": "auto", "tooltip": tip})
                   for kind, tip in TEXT_ENCODER_TIPS.items()},
                "download": model_downloads.DOWNLOAD_INPUT,
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, base_model, checkpoint, clip_l="auto", clip_g="auto", t5xxl="auto"):
        """The files' own check: a listed file, or a known one that is absent (downloaded when the node runs)."""
        inputs = cls.INPUT_TYPES()
        required, optional = inputs["required"], inputs["optional"]
        checks = [
            model_downloads.validate("base_model", base_model, required["base_model"][0], "checkpoints", model_folders.SINGLE_FILE_PREFIX),
            model_downloads.validate("checkpoint", checkpoint, required["checkpoint"][0], "diception"),
        ] + [model_downloads.validate(kind, value, optional[kind][0], "text_encoders")
             for kind, value in (("clip_l", clip_l), ("clip_g", clip_g), ("t5xxl", t5xxl))]
        return next((c for c in checks if c is not True), True)

    def load(self, base_model, checkpoint, dtype, clip_l="auto", clip_g="auto", t5xxl="auto", download=True):
        from ..models.diception import load_pipeline  # diffusers: imported when the node first runs, not at start-up

        chosen = {"clip_l": clip_l, "clip_g": clip_g, "t5xxl": t5xxl}
        base_model = model_downloads.plain(base_model)
        base = (model_downloads.fetch("checkpoints", base_model[len(model_folders.SINGLE_FILE_PREFIX):], download, "base_model")
                if base_model.startswith(model_folders.SINGLE_FILE_PREFIX) else model_folders.find_base(base_model))
        checkpoint = model_downloads.fetch("diception", checkpoint, download, "checkpoint")
        encoders = {k: model_downloads.fetch("text_encoders", v, download, k, find=model_folders.find_text_encoder)
                    for k, v in chosen.items() if v != "auto"}  # (download)-marked names: plain() inside fetch
        pipeline = load_pipeline(
            base,
            checkpoint,
            DTYPES.get(dtype) or comfy_adapter.auto_dtype(),
            model_folders.prompt_cache_root(),
            tokenizer_dirs=model_folders.single_file_tokenizers(comfy_adapter.tokenizer_dirs()),
            configs=model_folders.single_file_configs(),
            text_encoders=encoders,
            text_encoder_candidates=model_folders.text_encoder_paths(),
            host=ComfyHost(),
        )
        return (DiceptionModel(pipeline),)


class PerceiveTask:
    DESCRIPTION = (
        "Runs one DICEPTION task on an image batch and returns its answer as an RGB image at the input size: "
        "depth (near = bright), surface normals, point-prompted / entity / semantic segmentation, or pose. "
        "1 step with guidance 1.0 is nearly as good as 28 steps with guidance 2.0 for depth and normals."
    )
    CATEGORY = "DICEPTION"
    FUNCTION = "perceive"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("answer",)
    OUTPUT_TOOLTIPS = ("the task's answer as an RGB image at the input size; decode it with the RGB-to-… decoders",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("DICEPTION_MODEL", {"tooltip": "from Load DICEPTION"}),
                "image": ("IMAGE", {"tooltip": "the image batch (or video frames) to perceive"}),
                "task": (list(TASK_PROMPTS), {"default": "depth", "tooltip": "what DICEPTION answers: depth, normals, point / entity / semantic segmentation, or pose"}),
                "category": (["none"] + list(COCO_CATEGORIES), {"default": "none", "tooltip": "COCO class, for semantic segmentation only"}),
                "points": ("STRING", {"default": "[]", "multiline": False, "tooltip": f'Point segmentation only: 1 to {MAX_POINTS} points in pixels of the input, KJNodes Points Editor JSON [{{"x": 120, "y": 80}}] for every image, or one such list per image of the batch (as PerSAM Segment emits)', "max_points": MAX_POINTS}),
                "steps": ("INT", {"default": 28, "min": 1, "max": 200, "tooltip": "denoising steps: 28 as in the paper; 1 is nearly as good for depth and normals and 28× faster"}),
                "guidance": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 20.0, "step": 0.1, "tooltip": "classifier-free guidance; 1.0 or less turns it off"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "noise is drawn on the CPU: the same seed gives the same answer on any device"}),
                "resolution": ("INT", {"default": 768, "min": 64, "max": 2048, "step": 16, "tooltip": "the image is resized to resolution x resolution (DICEPTION was trained at 768)"}),
            },
            "optional": {
                "point_order": (list(POINT_ORDERS), {"default": "yx (training data)", "tooltip": "slot order of point coordinates; the official code disagrees with itself (see docs/diception.md)"}),
                "batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": "images per transformer / VAE call: larger is faster per image and needs more memory; the answers do not depend on it"}),
                "task_name": ("STRING", {"default": "", "tooltip": "a task taught with Train / Load DICEPTION Adapter, by its name (overrides task); empty: the task above"}),
            },
        }

    def perceive(self, model, image, task, category, points, steps, guidance, seed, resolution, point_order="yx (training data)", batch_size=4, task_name=""):
        answers = model.pipeline(
            image,
            task_name.strip() or task,
            category="" if category == "none" else category,
            points=points,
            steps=steps,
            guidance=guidance,
            seed=seed,
            resolution=resolution,
            point_order=POINT_ORDERS[point_order],
            batch_size=batch_size,
        )
        return (answers,)


NODE_CLASS_MAPPINGS = {"DiceptionLoad": LoadDiception, "DiceptionPerceiveTask": PerceiveTask}
NODE_DISPLAY_NAME_MAPPINGS = {"DiceptionLoad": "Load DICEPTION", "DiceptionPerceiveTask": "Perceive Task (DICEPTION)"}
