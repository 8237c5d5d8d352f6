"""Loading Segment Anything checkpoints (official ``.pth`` or ``.safetensors``), architecture read off the weights."""

import copy
import json
from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from ..weights import WeightsError, load_weights, tensors_only
from .encoder_attention import enable_efficient_attention
from .guided_decoder import GuidedMaskDecoder, enable_target_guidance

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


CONFIG_TYPES = {  # what a config beside the checkpoint may set, and the JSON type of each value
    **{name: int for name in (
        "encoder_embed_dim", "encoder_depth", "encoder_num_heads", "window_size", "img_size", "patch_size", "out_chans",
        "prompt_embed_dim", "mask_in_chans", "decoder_depth", "decoder_mlp_dim", "decoder_num_heads",
        "num_multimask_outputs", "iou_head_depth", "iou_head_hidden_dim")},
    "mlp_ratio": float, "encoder_global_attn_indexes": list, "pixel_mean": list, "pixel_std": list,
}


def config_beside(path: Path):
    """An optional ``<name>_config.json`` / ``<name>.json`` next to the checkpoint (for non-standard SAMs),
    checked: a JSON object of known keys with numbers (lists of numbers) as values."""
    for candidate in (path.with_name(path.stem + "_config.json"), path.with_suffix(".json")):
        if candidate.is_file():
            return check_config(candidate)
    return {}


def check_config(file: Path) -> dict:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{file.name} (the SAM config beside the checkpoint) is not valid JSON ({e}); fix or remove it") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{file.name}: expected a JSON object of SAM settings, got a {type(config).__name__}")
    for key, value in config.items():
        if key not in CONFIG_TYPES:
            raise WeightsError(f"{file.name}: unknown SAM setting {key!r}; known: {sorted(CONFIG_TYPES)}")
        kind = CONFIG_TYPES[key]
        numbers = value if kind is list else [value]
        ok = isinstance(value, list) if kind is list else True
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers)
        ok = ok and (kind is not int or isinstance(value, int)) and all(v == v and abs(v) != float("inf") for v in numbers)
        if not ok or (kind is int and value < 1):
            expected = {int: "a positive integer", float: "a number", list: "a list of numbers"}[kind]
            raise WeightsError(f"{file.name}: {key} must be {expected}, got {value!r}")
    return config


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
    state = tensors_only(dict(state), path)
    try:
        cfg = {**sam_config(state), **config_beside(path)}
    except KeyError as e:
        raise WeightsError(f"{path.name} is an incomplete Segment Anything checkpoint: it lacks {e.args[0]!r}") from None
    except (IndexError, ValueError) as e:
        raise WeightsError(f"{path.name}: a Segment Anything tensor has an unexpected shape ({e})") from None
    for name in ("pixel_mean", "pixel_std"):
        if name in state:
            cfg[name] = state.pop(name).flatten().tolist()
    try:
        sam = build_sam(cfg)
    except (TypeError, ValueError, RuntimeError, AssertionError, ZeroDivisionError) as e:
        raise WeightsError(f"{path.name}: its settings do not make a Segment Anything model ({e})") from None
    try:
        result = sam.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches: "size mismatch for <key>: …"
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise WeightsError(f"{path.name} does not fit the Segment Anything architecture read off it: {detail}") from None
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path.name} does not fit the Segment Anything architecture read off it: missing {result.missing_keys[:5]}"
            f"{' …' if len(result.missing_keys) > 5 else ''}, unexpected {result.unexpected_keys[:5]}"
        )
    enable_target_guidance(sam)
    enable_efficient_attention(sam)
    return sam.eval().requires_grad_(False)


def adopt_sam(sam, name: str = "sam_model") -> Sam:
    """A ``segment_anything`` ``Sam`` loaded by another node pack (e.g. the ``SAM_MODEL`` of
    storyicon/comfyui_segment_anything) → a PerSAM-ready ``Sam`` that SHARES its parameters and buffers (no
    second copy of the weights) with PerSAM's decoder and encoder attention; the other pack's object is left
    as it was. SAM-HQ, SAM 2 and other variants are refused with a ``ValueError`` naming ``name``."""
    what = describe_foreign_sam(sam)
    supported = ("PerSAM supports Segment Anything (v1) ViT-B / ViT-L / ViT-H models (segment_anything's Sam, "
                 "e.g. sam_vit_b_01ec64.pth from a SAM_MODEL loader, or this pack's SAM Loader (PerSAM))")
    if what is not None:
        raise ValueError(f"{name}: got {what}; {supported}")
    if type(sam.image_encoder) is not ImageEncoderViT or type(sam.mask_decoder) not in (MaskDecoder, GuidedMaskDecoder):
        raise ValueError(
            f"{name}: got a Sam with a {type(sam.image_encoder).__name__} image encoder and a "
            f"{type(sam.mask_decoder).__name__} mask decoder (not SAM's own); {supported}"
        )
    shared = {id(t): t for t in list(sam.parameters()) + list(sam.buffers())}
    adopted = copy.deepcopy(sam, memo=shared)
    enable_target_guidance(adopted)
    enable_efficient_attention(adopted)
    return adopted.eval().requires_grad_(False)


def describe_foreign_sam(sam):
    """What a non-SAM input is, in words, or None when it is a ``segment_anything`` ``Sam``."""
    if isinstance(sam, dict) and "model" in sam:  # kijai/ComfyUI-segment-anything-2: {'model': SAM2Base, ...}
        inner = type(sam["model"]).__name__
        kind = "SAM 2" if "sam2" in (type(sam["model"]).__module__ + inner).lower() else inner
        return f"a {kind} model ({inner}, in a {{'model': ...}} dict as SAM 2 packs pass it)"
    if not isinstance(sam, Sam):
        kind = "a SAM 2 model" if "sam2" in (type(sam).__module__ + type(sam).__name__).lower() else "an object"
        return f"{kind} of type {type(sam).__module__}.{type(sam).__name__}, not segment_anything's Sam"
    decoder = sam.mask_decoder
    if hasattr(decoder, "hf_token") or "hq" in type(decoder).__name__.lower() or "hq" in type(sam.image_encoder).__name__.lower():
        return (f"a SAM-HQ model ({type(sam.image_encoder).__name__} + {type(decoder).__name__}"
                f"{', ' + sam.model_name if isinstance(getattr(sam, 'model_name', None), str) else ''})")
    return None
