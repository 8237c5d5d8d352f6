"""Is the VAE slower when loaded with ``torch_dtype`` (as the pack loads it)? The weight-memory-layout question of
issue 28: in two profiler captures the pack's VAE convolutions took 566 ms against the official code's 386 ms on
identical inputs.

    python bench/vae_weight_layout.py [--repeats 15] [--size 256]

An SD3-medium-sized VAE (block_out_channels 128/256/512/512, 16 latent channels; random weights, saved once as a
diffusers folder) is loaded three ways: ``from_pretrained(torch_dtype=float32)`` (the pack), ``from_pretrained()``
then ``.to(float32)``, and a copy of the first whose every weight is moved to a fresh, 64-byte-aligned allocation.
Each prints its weights' layout (contiguous, channels-last, start address modulo 64) and the median time of one
encode + decode of the same image, the three measured interleaved (A, B, C, A, B, C, ...) so that the load of a
shared machine falls on all alike; ratios are against the first row.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SD3_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[128, 256, 512, 512],
               layers_per_block=2, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
               norm_num_groups=32, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False)


def layout(vae) -> str:
    weights = [p for p in vae.parameters() if p.ndim == 4]
    contiguous = sum(p.is_contiguous() for p in weights)
    channels_last = sum(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in weights)
    aligned = sum(p.data_ptr() % 64 == 0 for p in weights)
    return f"{len(weights)} conv weights: {contiguous} contiguous, {channels_last} channels-last only, {aligned} 64-byte aligned"


def realigned(vae):
    for p in vae.parameters():
        fresh = torch.empty(p.numel() + 16, dtype=p.dtype)
        start = (-fresh.data_ptr() % 64) // p.element_size()
        view = fresh[start : start + p.numel()].view_as(p)
        view.copy_(p.data)
        p.data = view
    return vae


@torch.no_grad()
def once(vae, pixels) -> float:
    start = time.perf_counter()
    latents = vae.encode(pixels).latent_dist.mode()
    vae.decode(latents, return_dict=False)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        AutoencoderKL(**SD3_VAE).save_pretrained(folder)
        loads = {
            "from_pretrained(torch_dtype=float32) (pack)": AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32),
            "from_pretrained() then .to(float32)": AutoencoderKL.from_pretrained(folder).to(torch.float32),
            "pack's load, weights re-allocated": realigned(AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32)),
        }
    pixels = torch.rand(1, 3, args.size, args.size) * 2 - 1
    reference = None
    for name, vae in loads.items():
        vae.eval()
        once(vae, pixels)  # warm-up
        with torch.no_grad():
            out = vae.decode(vae.encode(pixels).latent_dist.mode(), return_dict=False)[0]
        reference = out if reference is None else reference
        print(f"{name}: {layout(vae)}; answer max |diff| to the first {float((out - reference).abs().max()):.2e}")
    times = {name: [] for name in loads}
    for _ in range(args.repeats):
        for name, vae in loads.items():
            times[name].append(once(vae, pixels))
    first = statistics.median(times[next(iter(loads))])
    print(f"\n{'load':<46} {'median ms':>10} {'ratio':>6} {'min ms':>8} {'max ms':>8}   ({args.repeats} interleaved repeats, "
          f"{args.size}x{args.size}, {torch.get_num_threads()} threads)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<46} {median * 1e3:>10.1f} {median / first:>6.3f} {min(values) * 1e3:>8.1f} {max(values) * 1e3:>8.1f}")


if __name__ == "__main__":
    main()
