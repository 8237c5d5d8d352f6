"""Shared test set-up: the repository root on sys.path (the engine is imported as ``models``), the server fixtures
(tests/comfy_server.py), the browser fixtures (tests/current_frontend.py) and a small random SAM."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


pytest_plugins = ["comfy_server", "current_frontend", "label_collection_checks"]


@pytest.fixture(scope="module")
def small_sam():
    """A random SAM with a 256-pixel input (fast), enabled as ``load_sam`` enables a loaded one."""
    import torch

    from models.persam.encoder_attention import enable_efficient_attention
    from models.persam.guided_decoder import enable_target_guidance
    from models.persam.sam_loading import build_sam

    torch.manual_seed(0)
    sam = build_sam({
        "encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2, "encoder_global_attn_indexes": [1],
        "window_size": 4, "mlp_ratio": 2.0, "img_size": 256, "patch_size": 16, "out_chans": 32,
        "prompt_embed_dim": 32, "mask_in_chans": 8, "decoder_depth": 2, "decoder_mlp_dim": 32,
        "decoder_num_heads": 2, "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 32,
    })
    enable_target_guidance(sam)
    enable_efficient_attention(sam)
    return sam.eval().requires_grad_(False)
