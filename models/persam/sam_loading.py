"""Loading Segment Anything checkpoints (official ``.pth`` or ``.safetensors``), architecture read off the weights."""

import json
from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from ..weights import WeightsError, load_weights
from .encoder_attention import enable_efficient_attention
from .guided_decoder import enable_target_guidance

DECODER_HEADS = 8  # SAM's value; not visible in the weights, so a config beside the checkpoint may override it


def sam_config(state: dict) -> dict:
    """SAM's hyper-parameters from its state dict (vit_b / vit_l / vit_h, or any smaller variant)."""
    blocks = sorted({int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks.")})
    embed_dim, _, patch, _ = state["image_encoder.patch_embed.proj.weight"].shape
    grid = state["image_encoder.pos_embed"].shape[1]
    rel_sizes = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in blocks]
    head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
    layers = {int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers.")}
    iou_layers = {int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.iou_prediction_head.layers.")}
    return {
        "encoder_embed_dim": embed_dim,
        "encoder_depth": len(blocks),
        "encoder_num_heads": embed_dim // head_dim,
        "encoder_global_attn_indexes": [i for i, s in zip(blocks, rel_sizes) if s == 2 * grid - 1],
        "window_size": (min(rel_sizes) + 1) // 2,
        "mlp_ratio": state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        "img_size": grid * patch,
        "patch_size": patch,
        "out_chans": state["image_encoder.neck.0.weight"].shape[0],
        "prompt_embed_dim": state["prompt_encoder.point_embeddings.0.weight"].shape[1],
        "mask_in_chans": state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        "decoder_depth": len(layers),
        "decoder_mlp_dim": state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
        "decoder_num_heads": DECODER_HEADS,
        "num_multimask_outputs": state["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        "iou_head_depth": len(iou_layers),
        "iou_head_hidden_dim": state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
    }


def build_sam(cfg: dict) -> Sam:
    grid = cfg["img_size"] // cfg["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg["encoder_depth"], embed_dim=cfg["encoder_embed_dim"], img_size=cfg["img_size"],
            mlp_ratio=cfg["mlp_ratio"], norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg["encoder_num_heads"], patch_size=cfg["patch_size"], qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=cfg["encoder_global_attn_indexes"], window_size=cfg["window_size"],
            out_chans=cfg["out_chans"],
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg["prompt_embed_dim"], image_embedding_size=(grid, grid),
            input_image_size=(cfg["img_size"], cfg["img_size"]), mask_in_chans=cfg["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=cfg["num_multimask_outputs"],
            transformer=TwoWayTransformer(
                depth=cfg["decoder_depth"], embedding_dim=cfg["prompt_embed_dim"],
                mlp_dim=cfg["decoder_mlp_dim"], num_heads=cfg["decoder_num_heads"],
            ),
            transformer_dim=cfg["prompt_embed_dim"], iou_head_depth=cfg["iou_head_depth"],
            iou_head_hidden_dim=cfg["iou_head_hidden_dim"],
        ),
        pixel_mean=cfg.get("pixel_mean", [123.675, 116.28, 103.53]),
        pixel_std=cfg.get("pixel_std", [58.395, 57.12, 57.375]),
    )
    return sam


def config_beside(path: Path):
    """An optional ``<name>_config.json`` / ``<name>.json`` next to the checkpoint (for non-standard SAMs)."""
    for candidate in (path.with_name(path.stem + "_config.json"), path.with_suffix(".json")):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return {}


def load_sam(path) -> Sam:
    """A SAM checkpoint (vit_b/l/h ``.pth`` loaded weights-only, or ``.safetensors``) → ``Sam`` in eval mode,
    with PerSAM's target-guided mask decoder and the memory-efficient encoder attention enabled."""
    path = Path(path)
    state = load_weights(path)
    if not isinstance(state, dict) or "image_encoder.patch_embed.proj.weight" not in state or not any(
        k.startswith("mask_decoder.") for k in state
    ):
        sample = list(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise WeightsError(
            f"{path.name} is not a Segment Anything checkpoint (expected image_encoder.*, prompt_encoder.*, "
            f"mask_decoder.* keys as in sam_vit_b/l/h .pth files; found {sample})"
        )
    state = dict(state)
    cfg = {**sam_config(state), **config_beside(path)}
    for name in ("pixel_mean", "pixel_std"):
        if name in state:
            cfg[name] = state.pop(name).flatten().tolist()
    sam = build_sam(cfg)
    sam.load_state_dict(state, strict=True)
    enable_target_guidance(sam)
    enable_efficient_attention(sam)
    return sam.eval().requires_grad_(False)
