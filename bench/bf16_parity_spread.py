"""How far the pack's bf16 DICEPTION runs are from the fp32 answer, as a multiple of the official bf16 run's own
distance: the measurement behind ``BF16_SPREAD_MULTIPLE`` in tests/test_diception_parity.py.

    python bench/bf16_parity_spread.py                 # current kernels
    python bench/bf16_parity_spread.py --math --threads 1

For every bf16 fixture case and every recorded tensor: ratio = distance(pack bf16, truth) / distance(official bf16,
truth), in max-abs and rel-L2, where truth is the fp32 answer of the same case (see the test module). Prints the
largest ratio of each case and over all cases, then the same for deliberately broken variants of the pipeline,
which the test's criterion (ratio ≤ multiple, plus one bf16 step) must reject (a dropped point token moves the tiny
model's answer less than bf16 rounding does: only the fp32 criterion sees it). Run it in each environment
(.venv, .venv-floors) and on each machine to see what legitimately varies.
"""

import argparse
import contextlib
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_diception_parity as parity  # noqa: E402


def worst(pipes, run, broken=None):
    ref, meta = parity.load_run("bf16", run)
    pipe = pipes["bf16"]
    with broken(pipe) if broken else contextlib.nullcontext():
        ours = parity.stagewise(pipe, ref, meta)
    truth = parity.truth_for(pipes, run, ref, meta)
    rows = []
    for key, value in ours.items():
        d_ours, d_off = parity.distances(value, truth[key]), parity.distances(ref[key], truth[key])
        limits = parity.bf16_limits(ref[key], truth[key])
        ratios = tuple(o / max(s, 1e-12) for o, s in zip(d_ours, d_off))
        rows.append((max(ratios), key, ratios, d_ours[0] > limits[0] or d_ours[1] > limits[1]))
    return max(rows), any(r[3] for r in rows)


BROKEN = {"dropped point token": parity.dropped_point_token, **parity.BROKEN_BF16}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--math", action="store_true", help="force SDPA's math kernel")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--checkpoint", default="pth", choices=("pth", "safetensors"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tempfile

    import diffusers
    import transformers

    cache = tempfile.mkdtemp()
    ckpt = parity.DICE / "model" / f"diception_tiny.{args.checkpoint}"
    pipes = {v: parity.load_pipeline(parity.DICE / "model" / "tiny_sd3", ckpt, dt, cache) for v, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernel = sdpa_kernel(SDPBackend.MATH) if args.math else contextlib.nullcontext()
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}, SDPA {'math' if args.math else 'default'}, avx512_bf16 {'avx512_bf16' in flags}, "
          f"amx {'amx_bf16' in flags}, checkpoint {args.checkpoint}; multiple in the test {parity.BF16_SPREAD_MULTIPLE}")
    with kernel:
        overall = (0.0,)
        for run in parity.run_names("bf16"):
            (ratio, key, (r_abs, r_rel), _), failed = worst(pipes, run)
            overall = max(overall, (r_abs, run, key, "max-abs"), (r_rel, run, key, "rel-L2"))
            print(f"  {run:30s} worst ratio {ratio:5.2f} at {key} (max-abs {r_abs:.2f}, rel-L2 {r_rel:.2f}){'  FAILS' if failed else ''}")
        print(f"largest ratio over all cases: {overall[0]:.2f} ({overall[3]}, {overall[1]} {overall[2]})")
        for name, broken in BROKEN.items():
            runs = [r for r in parity.run_names("bf16") if name != "dropped point token" or "seg2pt" in r]
            if name == "flipped guidance":
                runs = [r for r in runs if r.endswith("_g2")]
            results = [(worst(pipes, r, broken), r) for r in runs]
            caught = sum(failed for (_, failed), _ in results)
            least = min(ratio for ((ratio, *_), _), _ in results)
            print(f"broken: {name:22s} rejected in {caught} of {len(results)} cases; smallest worst ratio {least:.1f}")


if __name__ == "__main__":
    main()
