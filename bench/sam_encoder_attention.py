"""SAM's ViT image encoder: the package's attention vs ``EfficientRelPosAttention``, time and peak memory.

    python bench/sam_encoder_attention.py [--model vit_b] [--size 1024] [--repeats 2] [--threads 2]

Random weights at the real architecture (vit_b / vit_l / vit_h), fp32, one image of size² pixels. Each
variant runs in its own subprocess so that peak memory is its own: on CPU the process's peak resident set
(``ru_maxrss``) and its rise over the resident set just before the first forward; on CUDA (used when
present) ``torch.cuda.max_memory_allocated``. Prints seconds per image, memory, the ratios new / package,
and the largest difference of the two encoders' features.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARCH = {  # segment_anything's build_sam.py values
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=[2, 5, 8, 11]),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=[5, 11, 17, 23]),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=[7, 15, 23, 31]),
}


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def variant(args):
    """One variant in this process; prints a JSON line and saves the features."""
    from segment_anything.modeling import ImageEncoderViT

    from models.persam.encoder_attention import enable_efficient_attention

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    encoder = ImageEncoderViT(
        img_size=args.size, patch_size=16, mlp_ratio=4, qkv_bias=True, use_rel_pos=True, window_size=14, out_chans=256,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **ARCH[args.model],
    )
    for name, p in encoder.named_parameters():
        if "rel_pos" in name:
            torch.nn.init.normal_(p, std=0.02)  # the package zero-inits them; trained SAMs have non-zero ones
    encoder = encoder.eval().requires_grad_(False).to(device)
    if args.variant == "efficient":
        holder = torch.nn.Module()
        holder.image_encoder = encoder
        enable_efficient_attention(holder)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(device)
    before = rss_now()
    times = []
    with torch.no_grad():
        for _ in range(args.repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            features = encoder(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    torch.save(features.cpu(), args.out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"device": device, "seconds": min(times), "peak": peak, "rise": peak - before}
    if device == "cuda":
        result.update(peak=torch.cuda.max_memory_allocated(), rise=torch.cuda.max_memory_allocated())
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="vit_b", choices=list(ARCH))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=["package", "efficient"])
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.variant:
        return variant(args)
    results, features = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("package", "efficient"):
            out = Path(tmp) / f"{name}.pt"
            cmd = [sys.executable, __file__, "--variant", name, "--out", str(out), "--model", args.model,
                   "--size", str(args.size), "--repeats", str(args.repeats), "--threads", str(args.threads)]
            results[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            features[name] = torch.load(out)
    diff = (features["package"] - features["efficient"]).abs().max().item()
    base, new = results["package"], results["efficient"]
    device = base["device"]
    memory = "peak CUDA memory" if device == "cuda" else "peak RSS"
    print(f"SAM {args.model} image encoder, {args.size}², fp32, {device}" + ("" if device == "cuda" else f", {args.threads} threads"))
    print(f"{'attention':10s} {'s/image':>9s} {memory + ' MiB':>18s} {'rise MiB':>10s}")
    for name, r in results.items():
        print(f"{name:10s} {r['seconds']:9.3f} {r['peak'] / 2**20:18.0f} {r['rise'] / 2**20:10.0f}")
    print(f"ratio new/package: time {new['seconds'] / base['seconds']:.2f}, {memory} {new['peak'] / base['peak']:.2f}, "
          f"rise {new['rise'] / max(1, base['rise']):.2f}; features max-abs difference {diff:.2e}")


if __name__ == "__main__":
    main()
