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
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

from ..weights import WeightsError
from .prompts import TextEncoders, encoder_identity

SD3_MEDIUM_CONFIGS = Path(__file__).resolve().parent / "configs" / "sd3-medium"
TRANSFORMER_PREFIX, VAE_PREFIX = "model.diffusion_model.", "first_stage_model."
TEXT_PREFIXES = {
    "text_encoder": "text_encoders.clip_l.transformer.",
    "text_encoder_2": "text_encoders.clip_g.transformer.",
    "text_encoder_3": "text_encoders.t5xxl.transformer.",
}


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


class SingleFileTextEncoders:
    """Text encoders inside an SD3 single file (``incl_clips`` variants), tokenizers from given folders."""

    def __init__(self, path, dtype, tokenizer_dirs: dict, configs=SD3_MEDIUM_CONFIGS):
        self.path, self.dtype, self.tokenizer_dirs, self.configs = Path(path), dtype, tokenizer_dirs, Path(configs)

    @property
    def identity(self) -> str:
        return encoder_identity([self.path], self.dtype)

    def _state(self, name: str) -> dict:
        prefix = TEXT_PREFIXES[name]
        with safe_open(str(self.path), framework="pt") as f:
            state = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        if not state:
            raise WeightsError(
                f"{self.path.name} has no {name} weights ({prefix}*): the prompt is not in the prompt cache, so the "
                "text encoders are needed; use an sd3_medium_incl_clips_t5xxl* file or the diffusers folder"
            )
        return state

    def _model(self, name, config_cls, model_cls):
        config = config_cls.from_json_file(str(self.configs / name / "config.json"))
        state = self._state(name)
        if model_cls is CLIPTextModelWithProjection and "text_projection.weight" not in state:
            state["text_projection.weight"] = torch.eye(config.projection_dim, config.hidden_size)  # unprojected pooled
        if model_cls is T5EncoderModel and "encoder.embed_tokens.weight" not in state:
            state["encoder.embed_tokens.weight"] = state["shared.weight"]
        model, info = model_cls.from_pretrained(
            None, config=config, state_dict=state, torch_dtype=self.dtype, output_loading_info=True
        )
        missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
        if missing:
            raise WeightsError(f"{self.path.name}: {name} weights are incomplete, missing {missing[:5]}")
        return model.eval().requires_grad_(False)

    def load(self) -> TextEncoders:
        dirs = self.tokenizer_dirs
        missing = [k for k in ("clip", "t5") if not dirs.get(k) or not Path(dirs[k]).is_dir()]
        if missing:
            raise WeightsError(f"tokenizer folders not found for {missing} (searched: {dirs}); they are needed on a prompt-cache miss")
        return TextEncoders(
            tokenizer=CLIPTokenizer.from_pretrained(dirs["clip"], model_max_length=77),
            tokenizer_2=CLIPTokenizer.from_pretrained(dirs["clip"], model_max_length=77, pad_token="!"),
            tokenizer_3=T5TokenizerFast.from_pretrained(dirs["t5"]),
            text_encoder=self._model("text_encoder", CLIPTextConfig, CLIPTextModelWithProjection),
            text_encoder_2=self._model("text_encoder_2", CLIPTextConfig, CLIPTextModelWithProjection),
            text_encoder_3=self._model("text_encoder_3", T5Config, T5EncoderModel),
        )
