"""Test-only ComfyUI nodes (loaded into the test servers beside the pack by tests/comfy_server.py, for
tests/test_persam_reference_nodes.py).

``TestSamModelLoader`` returns a ``SAM_MODEL`` exactly as storyicon/comfyui_segment_anything's
SAMModelLoader builds one (node.py ``load_sam_model``, read at HEAD ab63955): a ``segment_anything`` ``Sam``
whose checkpoint is a plain state dict read with ``torch.load`` into ``load_state_dict(strict=False)``, moved
to ComfyUI's device, ``eval()``, with ``sam.model_name`` = the file name; that pack's SAM-HQ is the same
``Sam`` class with its ``ImageEncoderViTHQ`` (forward returns a tuple) and ``MaskDecoderHQ`` (an extra
``hf_token``), mirrored here by two small classes of those names; a SAM 2 pack (kijai/ComfyUI-segment-
anything-2) passes ``{'model': SAM2Base, 'dtype', 'device', 'segmentor', 'version'}``. The tiny SAM is the
test fixture's. ``TestImageList`` outputs a LIST of reference images of different sizes with their masks.
"""

import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

import comfy.model_management

TINY = Path(__file__).resolve().parent.parent / "fixtures" / "persam"


class ImageEncoderViTHQ(ImageEncoderViT):
    def forward(self, x):
        x = super().forward(x)
        return x, [x]


class MaskDecoderHQ(MaskDecoder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hf_token = torch.nn.Embedding(1, self.transformer_dim)


class SAM2Base(torch.nn.Module):
    pass


def tiny_sam(hq=False) -> Sam:
    cfg = json.loads((TINY / "tiny_sam_config.json").read_text())
    grid = cfg["img_size"] // cfg["patch_size"]
    encoder = ImageEncoderViTHQ if hq else ImageEncoderViT
    decoder = MaskDecoderHQ if hq else MaskDecoder
    return Sam(
        image_encoder=encoder(
            depth=cfg["encoder_depth"], embed_dim=cfg["encoder_embed_dim"], img_size=cfg["img_size"],
            mlp_ratio=cfg["mlp_ratio"], norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg["encoder_num_heads"],
            patch_size=cfg["patch_size"], qkv_bias=True, use_rel_pos=True, global_attn_indexes=cfg["encoder_global_attn_indexes"],
            window_size=cfg["window_size"], out_chans=cfg["out_chans"]),
        prompt_encoder=PromptEncoder(embed_dim=cfg["prompt_embed_dim"], image_embedding_size=(grid, grid),
                                     input_image_size=(cfg["img_size"],) * 2, mask_in_chans=cfg["mask_in_chans"]),
        mask_decoder=decoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=cfg["decoder_depth"], embedding_dim=cfg["prompt_embed_dim"], mlp_dim=cfg["decoder_mlp_dim"],
            num_heads=cfg["decoder_num_heads"]), transformer_dim=cfg["prompt_embed_dim"],
            iou_head_depth=cfg["iou_head_depth"], iou_head_hidden_dim=cfg["iou_head_hidden_dim"]),
        pixel_mean=cfg["pixel_mean"], pixel_std=cfg["pixel_std"],
    )


class TestSamModelLoader:
    CATEGORY = "tests"
    FUNCTION = "main"
    RETURN_TYPES = ("SAM_MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"variant": (["sam", "sam_hq", "sam2"],)}}

    def main(self, variant):
        if variant == "sam2":
            return ({"model": SAM2Base(), "dtype": torch.float32, "device": "cpu", "segmentor": "single_image", "version": "2.0"},)
        sam = tiny_sam(hq=variant == "sam_hq")
        with open(TINY / "tiny_sam.pth", "rb") as f:
            state_dict = torch.load(f)
        sam.load_state_dict(state_dict, strict=False)
        sam.to(device=comfy.model_management.get_torch_device())
        sam.eval()
        sam.model_name = "tiny_sam.pth"
        TestSamModelLoader.last = sam  # the test checks that PerSAM shares these weights
        return (sam,)


class TestImageList:
    """Two reference images of different sizes (a list: 128x128, 160x128) and their masks, in the same order
    (``masks`` "matching") or not ("swapped")."""

    CATEGORY = "tests"
    FUNCTION = "main"
    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_IS_LIST = (True, True)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"masks": (["matching", "swapped"],)}}

    def main(self, masks):
        import sys

        sys.path.insert(0, str(TINY.parent.parent))
        from persam_synthetic import build_set

        references = build_set(tests=0)[0]
        images, found = [], []
        for r, extra in zip(references, (0, 32)):  # 128x128 and 160x128 (width x height)
            image, subject = np.pad(r.image, ((0, 0), (0, extra), (0, 0)), mode="edge"), np.pad(r.subject, ((0, 0), (0, extra)))
            images.append(torch.from_numpy(image.astype(np.float32) / 255)[None])
            found.append(torch.from_numpy(subject.astype(np.float32))[None])
        return images, found if masks == "matching" else found[::-1]


NODE_CLASS_MAPPINGS = {"TestSamModelLoader": TestSamModelLoader, "TestImageList": TestImageList}
