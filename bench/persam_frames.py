"""PerSAM on 16 frames: the image encoder in chunks (``batch_size`` 4 and 16) vs one frame at a time.

    python bench/persam_frames.py [--frames 16] [--model tiny|vit_b|vit_l|vit_h] [--threads 2]

``tiny`` is the test fixture's SAM (1024² input, tiny widths); vit_b/l/h are the real architectures with
random weights (a GPU run). The reference is the fixture's image and mask; the frames are its test photo
shifted a little further in each. CUDA is used when present (time and peak memory). Prints seconds per frame,
ratios against one at a time, and whether the masks are identical.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.persam import load_sam, make_reference  # noqa: E402
from models.persam.frames import segment_frames  # noqa: E402
from models.persam.sam_loading import build_sam  # noqa: E402
from models.persam.guided_decoder import enable_target_guidance  # noqa: E402
from models.persam.encoder_attention import enable_efficient_attention  # noqa: E402

DATA = ROOT / "tests" / "fixtures" / "persam"
ARCH = {  # segment_anything's build_sam.py values
    "vit_b": (768, 12, 12, [2, 5, 8, 11]), "vit_l": (1024, 24, 16, [5, 11, 17, 23]), "vit_h": (1280, 32, 16, [7, 15, 23, 31]),
}


def random_sam(name):
    dim, depth, heads, globals_ = ARCH[name]
    sam = build_sam({
        "encoder_embed_dim": dim, "encoder_depth": depth, "encoder_num_heads": heads, "encoder_global_attn_indexes": globals_,
        "window_size": 14, "mlp_ratio": 4.0, "img_size": 1024, "patch_size": 16, "out_chans": 256, "prompt_embed_dim": 256,
        "mask_in_chans": 16, "decoder_depth": 2, "decoder_mlp_dim": 2048, "decoder_num_heads": 8,
        "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256,
    })
    enable_target_guidance(sam)
    enable_efficient_attention(sam)
    return sam.eval().requires_grad_(False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--model", default="tiny", choices=["tiny", *ARCH])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sam = (load_sam(DATA / "tiny_sam.safetensors") if args.model == "tiny" else random_sam(args.model)).to(device)
    picture = lambda name: np.asarray(Image.open(DATA / "data" / name).convert("RGB"))  # noqa: E731
    reference = make_reference(sam, picture("ref.png"), picture("ref_mask.png")[..., 0])
    photo = torch.from_numpy(picture("test1.png").astype(np.float32) / 255)
    frames = torch.stack([torch.roll(photo, 4 * k, dims=1) for k in range(args.frames)])

    def run(batch_size):
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        if batch_size == 1:
            masks = torch.cat([segment_frames(sam, reference, frames[i : i + 1], batch_size=1).masks for i in range(len(frames))])
        else:
            masks = segment_frames(sam, reference, frames, batch_size=batch_size).masks
        if device == "cuda":
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        return (time.perf_counter() - start) / len(frames), masks, peak

    segment_frames(sam, reference, frames[:1])  # warm-up
    rows = [(size, *run(size)) for size in (1, 4, 16)]
    where = device + ("" if device == "cuda" else f", {args.threads} threads")
    print(f"PerSAM, SAM {args.model}, {args.frames} frames of 320x240, {where}")
    print(f"{'encoder batch':>13s} {'s/frame':>9s} {'ratio':>6s} {'same masks':>11s}" + (" peak GiB" if device == "cuda" else ""))
    for size, seconds, masks, peak in rows:
        same = torch.equal(masks, rows[0][2])
        label = "one at a time" if size == 1 else str(size)
        print(f"{label:>13s} {seconds:9.3f} {seconds / rows[0][1]:6.2f} {str(same):>11s}" + (f" {peak:8.2f}" if peak is not None else ""))


if __name__ == "__main__":
    main()
