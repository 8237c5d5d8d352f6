"""Python calls per DICEPTION call (cProfile), the per-call overhead the issue-28 profile found against the official code.

    python bench/diception_call_overhead.py

The tiny fixture model at 64x64, 1 step, batch 1, prompt cache warm, fp32 on the CPU; one warm-up call, then one
profiled call per row. The figure is the number of Python function calls cProfile sees in one call, with the calls of
the three hot spots the issue named: diffusers' ``ModelMixin.device`` / ``.dtype`` (each walks every module), the
scheduler built from its config, the prompt cache's file reads. Baseline row: the same call on
``torch.nn.Identity`` work (a call of ``torch.rand`` of the same output size), so the figure can be read as a ratio.
"""

import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.diception import load_pipeline  # noqa: E402
from models.diception.pipeline import preprocess  # noqa: E402
from models.diception.transformer import diception_forward  # noqa: E402

MODEL = ROOT / "tests" / "fixtures" / "diception" / "model"
HOT = {"device": "modeling_utils.py", "dtype": "modeling_utils.py", "from_config": "configuration_utils.py",
       "load_file": "torch.py"}


def profile(call):
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    stats = pstats.Stats(profiler)
    hot = {name: 0 for name in HOT}
    for (path, _, function), (_, calls, *_rest) in stats.stats.items():
        if function in HOT and path.endswith(HOT[function]):
            hot[function] += calls
    return stats.total_calls, hot


def main():
    torch.set_num_threads(1)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as cache:
        pipe = load_pipeline(MODEL / "tiny_sd3", MODEL / "diception_tiny.safetensors", torch.float32, cache)
        pipe(image, "depth", steps=1, guidance=1.0, resolution=64, seed=0)  # warm: prompt cache filled, imports done
        embeds, pooled = pipe.encode_prompts(["[[image2depth]]"])["[[image2depth]]"]
        pixels = preprocess(image, 64)
        points = pipe.point_encoder(torch.zeros(1, 5, 2), torch.zeros(1, 5))

        @torch.no_grad()
        def model_alone():
            cond = pipe.vae.encode(pixels).latent_dist.mode()
            out = diception_forward(pipe.transformer, torch.zeros_like(cond), cond, embeds, pooled, points, torch.tensor([1000.0]))
            pipe.vae.decode(out, return_dict=False)

        model_alone()
        floor, _ = profile(model_alone)
        print(f"{'row':<40} {'python calls':>12} {'ratio':>6}  device dtype from_config load_file")
        print(f"{'baseline: the model alone (encode, forward, decode)':<40} {floor:>12} {1:>6.2f}")
        for guidance in (1.0, 2.0):
            run = lambda: pipe(image, "depth", steps=1, guidance=guidance, resolution=64, seed=0)  # noqa: E731
            run()
            total, hot = profile(run)
            print(f"{f'pack, guidance {guidance}':<40} {total:>12} {total / floor:>6.2f}  {hot['device']:>6} {hot['dtype']:>5} "
                  f"{hot['from_config']:>11} {hot['load_file']:>9}")


if __name__ == "__main__":
    main()
