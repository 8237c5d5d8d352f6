"""Builders of tiny, randomly initialised models in the REAL on-disk formats (built once per session).

- ``build_sd3_folder``: an SD3 diffusers folder (``stable-diffusion-3-medium-diffusers`` layout): tiny
  transformer, VAE, two CLIP-with-projection encoders, a T5 encoder, offline tokenizers, the SD3 scheduler
  config; plus a DICEPTION checkpoint for it in the official ``.pth`` layout.
- ``build_sam_checkpoint``: a SAM state dict (``segment_anything`` keys) with a small ViT image encoder.
"""

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

from models.diception.point_encoder import PointEncoder
from models.persam.sam_loading import build_sam

WORDS = ["[[", "]]", "image", "2", "depth", "normal", "segmentation", "semantic", "entity", "pose", "dog", "cat"]


def clip_tokenizer(folder: Path, pad: str) -> None:
    vocab = {chr(i): i for i in range(33, 127)}
    vocab.update({chr(i) + "</w>": 94 + i - 33 for i in range(33, 127)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad)
    tok.model_max_length = 77
    tok.save_pretrained(folder)


def t5_tokenizer(folder: Path) -> None:
    """A Unigram (SentencePiece-style) T5 tokenizer built with the tokenizers library, so that it builds the same
    with transformers 4 and 5 (the dependency floors run this too)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(w, -1.0) for w in WORDS]
    vocab += [(chr(i), -5.0) for i in range(33, 127) if chr(i) not in WORDS]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    T5TokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), extra_ids=0).save_pretrained(folder)


def build_sd3_folder(root: Path, seed: int = 0) -> Path:
    folder = Path(root) / "tiny_sd3_built"
    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(seed)
    SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=40, out_channels=16, pos_embed_max_size=24,
    ).save_pretrained(folder / "transformer")
    AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[8, 16, 16, 16], layers_per_block=1,
        norm_num_groups=8, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
    ).save_pretrained(folder / "vae")
    for name, hidden, proj in (("text_encoder", 16, 16), ("text_encoder_2", 24, 24)):
        config = CLIPTextConfig(vocab_size=192, hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                                num_attention_heads=2, projection_dim=proj, max_position_embeddings=77)
        CLIPTextModelWithProjection(config).save_pretrained(folder / name)
    T5EncoderModel(T5Config(vocab_size=120, d_model=64, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
                            feed_forward_proj="gated-gelu")).save_pretrained(folder / "text_encoder_3")
    clip_tokenizer(folder / "tokenizer", "<|endoftext|>")
    clip_tokenizer(folder / "tokenizer_2", "!")
    t5_tokenizer(folder / "tokenizer_3")
    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    return folder


def build_diception_checkpoint(folder: Path, path: Path, seed: int = 1) -> Path:
    """A DICEPTION_v1.pth-format checkpoint for the tiny SD3 folder (weights differ from the base)."""
    if path.is_file():
        return path
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel.from_pretrained(folder, subfolder="transformer")
    for p in transformer.parameters():
        torch.nn.init.normal_(p, std=0.05)
    points = PointEncoder(transformer.config.caption_projection_dim)
    sd = points.state_dict()
    torch.save({
        "transformer": transformer.state_dict(),
        "point_embedder": {k[len("point_embedder."):]: v for k, v in sd.items() if k.startswith("point_embedder.")},
        "not_seg_embeddings": {"weight": sd["not_seg_embeddings.weight"]},
        "seg_embeddings": {"weight": sd["seg_embeddings.weight"]},
        "positional_encoding_gaussian_matrix": sd["positional_encoding_gaussian_matrix"],
    }, path)
    return path


def build_sam_checkpoint(root: Path, seed: int = 0) -> Path:
    path = Path(root) / "tiny_sam_built.pth"
    if path.is_file():
        return path
    torch.manual_seed(seed)
    cfg = {
        "encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2, "encoder_global_attn_indexes": [1],
        "window_size": 7, "mlp_ratio": 2.0, "img_size": 256, "patch_size": 16, "out_chans": 16,
        "prompt_embed_dim": 16, "mask_in_chans": 8, "decoder_depth": 2, "decoder_mlp_dim": 32,
        "decoder_num_heads": 8, "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 16,
    }
    torch.save(build_sam(cfg).state_dict(), path)
    return path


# --- SD3 single-file checkpoints (the layout of stabilityai's sd3_medium*.safetensors) -------------------

def _swap_halves(t):  # diffusers' swap_scale_shift is its own inverse
    shift, scale = t.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def transformer_to_single_file(sd: dict, num_layers: int) -> dict:
    """diffusers SD3Transformer2DModel keys → SAI MMDiT keys (the inverse of diffusers' converter)."""
    out = {
        "pos_embed": sd["pos_embed.pos_embed"],
        "x_embedder.proj.weight": sd["pos_embed.proj.weight"], "x_embedder.proj.bias": sd["pos_embed.proj.bias"],
        "context_embedder.weight": sd["context_embedder.weight"], "context_embedder.bias": sd["context_embedder.bias"],
        "final_layer.linear.weight": sd["proj_out.weight"], "final_layer.linear.bias": sd["proj_out.bias"],
        "final_layer.adaLN_modulation.1.weight": _swap_halves(sd["norm_out.linear.weight"]),
        "final_layer.adaLN_modulation.1.bias": _swap_halves(sd["norm_out.linear.bias"]),
    }
    for ours, theirs in (("timestep_embedder", "t_embedder"), ("text_embedder", "y_embedder")):
        for a, b in (("linear_1", "0"), ("linear_2", "2")):
            for p in ("weight", "bias"):
                out[f"{theirs}.mlp.{b}.{p}"] = sd[f"time_text_embed.{ours}.{a}.{p}"]
    for i in range(num_layers):
        d, s, last = f"transformer_blocks.{i}.", f"joint_blocks.{i}.", i == num_layers - 1
        for p in ("weight", "bias"):
            out[f"{s}x_block.attn.qkv.{p}"] = torch.cat([sd[f"{d}attn.to_{c}.{p}"] for c in "qkv"])
            out[f"{s}context_block.attn.qkv.{p}"] = torch.cat([sd[f"{d}attn.add_{c}_proj.{p}"] for c in "qkv"])
            out[f"{s}x_block.attn.proj.{p}"] = sd[f"{d}attn.to_out.0.{p}"]
            out[f"{s}x_block.adaLN_modulation.1.{p}"] = sd[f"{d}norm1.linear.{p}"]
            context_norm = sd[f"{d}norm1_context.linear.{p}"]
            out[f"{s}context_block.adaLN_modulation.1.{p}"] = _swap_halves(context_norm) if last else context_norm
            out[f"{s}x_block.mlp.fc1.{p}"] = sd[f"{d}ff.net.0.proj.{p}"]
            out[f"{s}x_block.mlp.fc2.{p}"] = sd[f"{d}ff.net.2.{p}"]
            if not last:
                out[f"{s}context_block.attn.proj.{p}"] = sd[f"{d}attn.to_add_out.{p}"]
                out[f"{s}context_block.mlp.fc1.{p}"] = sd[f"{d}ff_context.net.0.proj.{p}"]
                out[f"{s}context_block.mlp.fc2.{p}"] = sd[f"{d}ff_context.net.2.{p}"]
    return out


def vae_to_single_file(sd: dict, num_blocks: int) -> dict:
    """diffusers AutoencoderKL keys → LDM VAE keys (the inverse of diffusers' converter)."""
    import re

    out = {}
    for key, value in sd.items():
        k = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", k)
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{num_blocks - 1 - int(m[1])}.block.", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{num_blocks - 1 - int(m[1])}.upsample.", k)
        k = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", k)
        if "mid_block.attentions.0." in k:
            k = k.replace("mid_block.attentions.0.", "mid.attn_1.").replace("group_norm", "norm")
            k = k.replace("to_q", "q").replace("to_k", "k").replace("to_v", "v").replace("to_out.0", "proj_out")
            if value.ndim == 2:
                value = value[:, :, None, None]
        out[k] = value
    return out


def build_sd3_single_file(folder: Path, path: Path, with_text_encoders=True) -> Path:
    """One ``.safetensors`` with the tiny SD3 folder's MMDiT, VAE (and text encoders) in SAI's key layout."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        return path
    transformer = load_file(str(folder / "transformer/diffusion_pytorch_model.safetensors"))
    layers = json.loads((folder / "transformer/config.json").read_text())["num_layers"]
    vae = load_file(str(folder / "vae/diffusion_pytorch_model.safetensors"))
    blocks = len(json.loads((folder / "vae/config.json").read_text())["block_out_channels"])
    tensors = {"model.diffusion_model." + k: v for k, v in transformer_to_single_file(transformer, layers).items()}
    tensors.update({"first_stage_model." + k: v for k, v in vae_to_single_file(vae, blocks).items()})
    if with_text_encoders:
        for sub, name in (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g"), ("text_encoder_3", "t5xxl")):
            for k, v in load_file(str(folder / sub / "model.safetensors")).items():
                tensors[f"text_encoders.{name}.transformer.{k}"] = v
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


# --- SD3 text encoders as separate files, in the layouts ComfyUI v0.8.0 reads (comfy/sd.py, comfy/utils.py
# convert_old_quants, comfy/ops.py mixed_precision_ops) -----------------------------------------------------

FP8 = torch.float8_e4m3fn


def _fp8_scaled(weight: torch.Tensor):
    """Per-tensor scaled fp8 as ComfyUI quantises (scale = amax / fp8 max; stored = weight / scale)."""
    scale = (weight.abs().amax().float() / torch.finfo(FP8).max).clamp(min=1e-12)
    return (weight.float() / scale).to(FP8), scale


def _linear_weights(state: dict) -> list:
    return [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 2 and "embed" not in k and "shared" not in k
            and "relative_attention_bias" not in k]


def _half(state: dict) -> dict:
    return {k: v.half() for k, v in state.items()}


def build_comfy_text_encoders(folder: Path, dest: Path) -> dict:
    """The tiny SD3 folder's three text encoders as the separate files ComfyUI users keep → {name: path}:
    ``clip_l`` (fp16, no text_projection, as SD3 ships it), ``clip_l_projected``, ``clip_g`` (fp16, with
    text_projection), ``clip_g_clipsave`` (``text_projection`` transposed, as ComfyUI's CLIPSave writes it),
    ``t5xxl_fp16``, ``t5xxl_fp8_e4m3fn`` (every tensor fp8), ``t5xxl_fp8_e4m3fn_scaled`` (``scaled_fp8`` marker
    + ``scale_weight``), ``t5xxl_fp8_comfy_quant`` (``comfy_quant`` + ``weight_scale``), ``t5xxl_fp8_metadata``
    (``_quantization_metadata`` in the file metadata)."""
    from safetensors.torch import load_file, save_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    clip_l = load_file(str(folder / "text_encoder/model.safetensors"))
    clip_g = load_file(str(folder / "text_encoder_2/model.safetensors"))
    t5 = {k: v for k, v in load_file(str(folder / "text_encoder_3/model.safetensors")).items() if k != "encoder.embed_tokens.weight"}
    files = {
        "clip_l": ({k: v for k, v in _half(clip_l).items() if k != "text_projection.weight"}, None),
        "clip_l_projected": (_half(clip_l), None),
        "clip_g": (_half(clip_g), None),
        "clip_g_clipsave": ({**{k: v for k, v in _half(clip_g).items() if k != "text_projection.weight"},
                             "text_projection": clip_g["text_projection.weight"].half().t().contiguous()}, None),
        "t5xxl_fp16": (_half(t5), None),
        "t5xxl_fp8_e4m3fn": ({k: v.to(FP8) for k, v in t5.items()}, None),
    }
    scaled, quant, meta = _half(t5), _half(t5), _half(t5)
    scaled["scaled_fp8"] = torch.empty(0, dtype=FP8)
    layers = {}
    for key in _linear_weights(t5):
        layer = key[: -len(".weight")]
        q, scale = _fp8_scaled(t5[key])
        scaled[key], scaled[layer + ".scale_weight"] = q, scale
        quant[key], quant[layer + ".weight_scale"] = q, scale
        quant[layer + ".comfy_quant"] = torch.tensor(list(json.dumps({"format": "float8_e4m3fn"}).encode()), dtype=torch.uint8)
        meta[key], meta[layer + ".weight_scale"] = q, scale
        layers[layer] = {"format": "float8_e4m3fn"}
    files["t5xxl_fp8_e4m3fn_scaled"] = (scaled, None)
    files["t5xxl_fp8_comfy_quant"] = (quant, None)
    files["t5xxl_fp8_metadata"] = (meta, {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})})
    paths = {}
    for name, (tensors, metadata) in files.items():
        paths[name] = dest / f"{name}.safetensors"
        if not paths[name].is_file():
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(paths[name]), metadata=metadata)
    return paths
