"""DICEPTION on the tiny model: time per image and peak resident weights, in one run.

    python bench/diception_pipeline.py

Rows: prompt cache cold vs warm (1 step), 1 vs 28 steps (warm, guidance 1.0 vs 2.0 as DICEPTION's two
recommended settings), batch 1 vs 4 (warm, 1 step). Ratios are against the first row of each pair.
"Resident weights" = bytes of the parameters and buffers of every model part alive at the peak of the
run (the text encoders count only while they exist).
"""

import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.diception import load_pipeline  # noqa: E402
from models.diception import text_encoder_files  # noqa: E402

MODEL = ROOT / "tests" / "fixtures" / "diception" / "model"


def nbytes(modules) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in list(m.parameters()) + list(m.buffers()))


class Resident:
    """Tracks the weights alive: the denoiser and VAE always, the text encoders while they are built."""

    def __init__(self, pipe):
        self.base = nbytes([pipe.transformer, pipe.point_encoder, pipe.vae])
        self.peak = self.base
        original = text_encoder_files.TextEncoderFiles.load

        def load(source):
            encoders = original(source)
            self.peak = max(self.peak, self.base + nbytes(encoders.modules()))
            return encoders

        text_encoder_files.TextEncoderFiles.load = load


def run(pipe, batch, steps, guidance, repeats=3):
    images = torch.rand(batch, 96, 128, 3, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(repeats):
        pipe(images, "depth", steps=steps, guidance=guidance, resolution=64, seed=0)
    return (time.perf_counter() - start) / (repeats * batch)


def main():
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        pipe = load_pipeline(MODEL / "tiny_sd3", MODEL / "diception_tiny.safetensors", torch.float32, cache)
        resident = Resident(pipe)
        cold = run(pipe, 1, 1, 2.0, repeats=1)
        rows.append(("cache cold, 1 step", cold, resident.peak))
        resident.peak = resident.base
        warm = run(pipe, 1, 1, 2.0)
        rows.append(("cache warm, 1 step", warm, resident.peak))
        one = run(pipe, 1, 1, 1.0)
        many = run(pipe, 1, 28, 2.0, repeats=1)
        rows += [("1 step, guidance 1.0", one, resident.peak), ("28 steps, guidance 2.0", many, resident.peak)]
        b1 = run(pipe, 1, 1, 1.0)
        b4 = run(pipe, 4, 1, 1.0)
        rows += [("batch 1", b1, resident.peak), ("batch 4", b4, resident.peak)]
    print(f"{'setting':26s} {'s/image':>9s} {'ratio':>7s} {'resident weights':>17s}")
    for i, (name, seconds, peak) in enumerate(rows):
        baseline = rows[i - i % 2][1]
        print(f"{name:26s} {seconds:9.4f} {seconds / baseline:7.2f} {peak / 2**20:14.2f} MiB")


if __name__ == "__main__":
    main()
