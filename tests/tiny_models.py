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
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(w, -1.0) for w in WORDS]
    vocab += [(chr(i), -5.0) for i in range(33, 127) if chr(i) not in WORDS]
    T5TokenizerFast(vocab=vocab, extra_ids=0).save_pretrained(folder)


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
