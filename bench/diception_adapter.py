"""Few-shot adapter training: how big the adapter is, and what one training step costs.

1. Trainable fraction at the SD3-medium config (meta device, no weights): the default adapter (rank 8 on the
   8 attention projections, the 4 feed-forward layers and the 2 adaLN modulations of every joint block), against the
   transformer's parameters.
2. Tiny model (tests/fixtures), CPU fp32: seconds per step, the bytes autograd keeps for the backward pass of one
   step (saved-tensor hooks: what checkpointing trades for recomputation) and the child process's peak RSS, with and
   without per-block gradient checkpointing, each variant in its own child process; ratios against the run without
   checkpointing measured in the same invocation.
3. With a CUDA GPU: SD3-medium shape with random weights, bf16, 768², batch 1: s/step and peak VRAM.

    python bench/diception_adapter.py [--steps 20] [--resolution 128] [--batch 4]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusers import SD3Transformer2DModel  # noqa: E402

from models.diception.adapter import DEFAULT_RANK, DEFAULT_TARGETS, lora_parameter_count  # noqa: E402
from models.diception.single_file import SD3_MEDIUM_CONFIGS  # noqa: E402

DICE = ROOT / "tests" / "fixtures" / "diception" / "model"


def trainable_fraction(rank: int = DEFAULT_RANK) -> dict:
    config = SD3Transformer2DModel.load_config(SD3_MEDIUM_CONFIGS / "transformer")
    with torch.device("meta"):
        transformer = SD3Transformer2DModel.from_config(config)
    total = sum(p.numel() for p in transformer.parameters())
    lora = lora_parameter_count(transformer, rank, DEFAULT_TARGETS)
    return {"rank": rank, "adapter_params": lora, "transformer_params": total, "fraction_percent": round(100 * lora / total, 3)}


def tiny_step_cost(checkpointing: bool, steps: int, resolution: int, batch: int) -> dict:
    """Run in a child process: (s/step, peak RSS growth in MiB) of training on the tiny model."""
    from models.diception import load_pipeline
    from models.diception.finetune import TrainingSettings, train_adapter

    torch.set_num_threads(1)
    pipe = load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.safetensors", torch.float32, ROOT / ".cache" / "bench_prompt_cache")
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, resolution, resolution, 3, generator=g)
    settings = TrainingSettings(steps=1, batch_size=batch, resolution=resolution, checkpointing=checkpointing)
    train_adapter(pipe, images, 1 - images, "invert", "[[image2invert]]", settings)  # warm-up (prompt, kernels)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.nbytes) or t, lambda t: t):
        train_adapter(pipe, images, 1 - images, "invert", "[[image2invert]]", settings)
    settings.steps = steps
    start = time.perf_counter()
    train_adapter(pipe, images, 1 - images, "invert", "[[image2invert]]", settings)
    seconds = (time.perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"checkpointing": checkpointing, "s_per_step": round(seconds, 4), "saved_for_backward_mib": round(sum(saved) / 2**20, 2),
            "peak_rss_mib": round(peak, 1)}


def gpu_step_cost(steps: int = 5) -> dict:
    from models.diception.adapter import attach, activate, shared_copy
    from models.diception.transformer import diception_forward

    config = SD3Transformer2DModel.load_config(SD3_MEDIUM_CONFIGS / "transformer")
    transformer = SD3Transformer2DModel.from_config(config).to("cuda", torch.bfloat16).requires_grad_(False)
    copy = shared_copy(transformer)
    params = attach(copy, "task0", 32)
    for p in params:
        p.requires_grad_(True)
    activate(copy, "task0")
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    latent = 768 // 8
    x = torch.randn(1, 16, latent, latent, device="cuda", dtype=torch.bfloat16)
    text = torch.randn(1, 333, 4096, device="cuda", dtype=torch.bfloat16)
    pooled = torch.randn(1, 2048, device="cuda", dtype=torch.bfloat16)
    points = torch.randn(1, 5, 1536, device="cuda", dtype=torch.bfloat16)
    torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 1):
        if i == 1:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = diception_forward(copy, x, x, text, pooled, points, torch.tensor([500.0], device="cuda"), checkpointing=True)
        loss = out.float().pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return {"s_per_step": round((time.perf_counter() - start) / steps, 3), "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--child", choices=["plain", "checkpointing"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(tiny_step_cost(args.child == "checkpointing", args.steps, args.resolution, args.batch)))
        return 0
    print("SD3-medium config, meta device:", json.dumps(trainable_fraction()))
    results = {}
    for variant in ("plain", "checkpointing"):
        run = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(args.steps), "--resolution",
                              str(args.resolution), "--batch", str(args.batch)], capture_output=True, text=True, check=True)
        results[variant] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"tiny model, CPU fp32, {args.resolution}², batch {args.batch}:", json.dumps(results[variant]))
    plain, ckpt = results["plain"], results["checkpointing"]
    print(f"checkpointing / plain: time {ckpt['s_per_step'] / plain['s_per_step']:.2f}x, saved for backward "
          f"{ckpt['saved_for_backward_mib'] / plain['saved_for_backward_mib']:.2f}x, peak RSS {ckpt['peak_rss_mib'] / plain['peak_rss_mib']:.2f}x")
    if torch.cuda.is_available():
        print("SD3-medium shape, random weights, bf16, 768², batch 1, GPU:", json.dumps(gpu_step_cost()))
    else:
        print("GPU: not run (no CUDA device)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
