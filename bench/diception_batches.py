"""DICEPTION on a batch: images in chunks of 4 per VAE / transformer call vs one at a time, in one run.

    python bench/diception_batches.py                      # tiny fixture model, CPU (or CUDA when present)
    python bench/diception_batches.py --random-weights models/diception/configs/sd3-medium --resolution 768 \\
        --steps 28 --guidance 2.0 --dtype bf16              # SD3-medium shapes, random weights (a GPU run)

Prints seconds per image for ``batch_size`` 1 and 4 on the same 4 images (and their ratio, the acceptance
figure: ≤ 0.6), peak CUDA memory when on a GPU, and the largest difference between the chunked and the
one-at-a-time answers in fp32 and bf16 (tiny model only: the same noise per image, so they must agree).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.diception import DTYPES, DicePipeline, load_pipeline  # noqa: E402
from models.diception.point_encoder import PointEncoder  # noqa: E402
from models.diception.tasks import TASK_PROMPTS  # noqa: E402

MODEL = ROOT / "tests" / "fixtures" / "diception" / "model"


class RandomText:
    """Stands in for the text encoders: the prompt cache is filled with random embeddings up front."""

    identity = "random-weights"

    def load(self):
        raise RuntimeError("random-weights bench: every prompt is cached")


def random_pipeline(configs: Path, dtype, device, cache) -> DicePipeline:
    """SD3 transformer, VAE and point encoder with random weights in the shapes of ``configs``' config.json files."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    config = json.loads((configs / "transformer" / "config.json").read_text())
    transformer = SD3Transformer2DModel.from_config(config).to(device, dtype).eval().requires_grad_(False)
    vae = AutoencoderKL.from_config(json.loads((configs / "vae" / "config.json").read_text())).to(device, dtype).eval()
    inner = config["num_attention_heads"] * config["attention_head_dim"]
    point_encoder = PointEncoder(inner).to(device, dtype).eval().requires_grad_(False)
    scheduler = json.loads((configs / "scheduler" / "scheduler_config.json").read_text())
    pipe = DicePipeline(transformer, point_encoder, vae.requires_grad_(False), scheduler, RandomText(), cache)
    for prompt in (TASK_PROMPTS["depth"], ""):
        pipe.prompt_cache.put(prompt, torch.randn(1, 333, config["joint_attention_dim"]).to(dtype),
                              torch.randn(1, config["pooled_projection_dim"]).to(dtype))
    return pipe


def timed(pipe, images, args, batch_size):
    """Best of ``repeats`` seconds per image, the answers, and the peak CUDA memory (None on CPU)."""
    best, answers = float("inf"), None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.repeats):
        start = time.perf_counter()
        answers = pipe(images, "depth", steps=args.steps, guidance=args.guidance, resolution=args.resolution, seed=0, batch_size=batch_size)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / len(images))
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return best, answers, peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--random-weights", type=Path, help="a folder with transformer/, vae/, scheduler/ configs")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    images = torch.rand(args.images, 96, 128, 3, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as cache:
        if args.random_weights:
            pipe = random_pipeline(args.random_weights, DTYPES[args.dtype], device, cache)
        else:
            pipe = load_pipeline(MODEL / "tiny_sd3", MODEL / "diception_tiny.safetensors", DTYPES[args.dtype], cache)
            pipe.transformer.to(device), pipe.point_encoder.to(device), pipe.vae.to(device)
        timed(pipe, images[:1], argparse.Namespace(**{**vars(args), "repeats": 1}), 1)  # warm-up, fills the prompt cache
        one, single, peak1 = timed(pipe, images, args, 1)
        four, chunked, peak4 = timed(pipe, images, args, 4)
        where = f"{device}" + ("" if device == "cuda" else f", {args.threads} threads")
        model = args.random_weights or "tiny fixture model"
        print(f"DICEPTION {model}, {args.dtype}, {args.resolution}², {args.steps} step(s), guidance {args.guidance}, {where}")
        print(f"{'batch_size':>10s} {'s/image':>9s} {'ratio':>6s}" + (" peak GiB" if peak1 is not None else ""))
        for size, seconds, peak in ((1, one, peak1), (4, four, peak4)):
            print(f"{size:10d} {seconds:9.4f} {seconds / one:6.2f}" + (f" {peak:8.2f}" if peak is not None else ""))
        print(f"max |chunked − one at a time| ({args.dtype}): {(chunked.float() - single.float()).abs().max().item():.2e}")
        if not args.random_weights and args.dtype == "fp32":
            bf16 = load_pipeline(MODEL / "tiny_sd3", MODEL / "diception_tiny.safetensors", torch.bfloat16, cache)
            kw = dict(steps=args.steps, guidance=args.guidance, resolution=args.resolution, seed=0)
            diff = (bf16(images, "depth", batch_size=4, **kw) - bf16(images, "depth", batch_size=1, **kw)).abs().max().item()
            print(f"max |chunked − one at a time| (bf16): {diff:.2e}")


if __name__ == "__main__":
    main()
