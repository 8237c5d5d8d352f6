"""What the pack adds to every ComfyUI start: the time ComfyUI's own loader (``nodes.load_custom_node``) takes to
import the pack, and the heavy modules that import brings in, measured in a fresh process per run after
ComfyUI's own start-up imports (torch, comfy.*, its ``nodes.py``).

    .venv/bin/python bench/startup_import.py [--comfyui .cache/comfyui-v0.8.0] [--pack .] [--runs 5]

Prints the median of the runs and the heavy modules (diffusers, transformers, segment_anything, safetensors,
torchvision, accelerate) that were not loaded before the pack and were after it. Compare against another
checkout of the pack (e.g. ``--pack /path/to/main``) in the same invocation with ``--baseline``.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("diffusers", "transformers", "segment_anything", "safetensors", "torchvision", "accelerate", "huggingface_hub")

CHILD = r"""
import asyncio, inspect, json, os, sys, time
comfyui, pack = sys.argv[1], sys.argv[2]
sys.argv = ["main.py", "--cpu"]
sys.path.insert(0, comfyui)
os.chdir(comfyui)
import comfy.options
comfy.options.enable_args_parsing()
import nodes  # ComfyUI's start-up imports: torch, comfy.*, the core nodes
before = set(sys.modules)
start = time.perf_counter()
loaded = nodes.load_custom_node(pack)
if inspect.isawaitable(loaded):
    loaded = asyncio.run(loaded)
seconds = time.perf_counter() - start
new = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print(json.dumps({"ok": bool(loaded) if loaded is not None else True, "seconds": seconds, "new_top_level": new}))
"""


def measure(comfyui: Path, pack: Path, runs: int) -> dict:
    seconds, new = [], set()
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(comfyui), str(pack)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if not result["ok"]:
            raise RuntimeError(f"ComfyUI could not load the pack at {pack}:\n{out.stderr[-3000:]}")
        seconds.append(result["seconds"])
        new |= set(result["new_top_level"])
    return {"median_s": statistics.median(seconds), "runs_s": [round(s, 3) for s in seconds], "heavy": sorted(new & set(HEAVY))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path, default=ROOT / ".cache" / "comfyui-v0.8.0")
    parser.add_argument("--pack", type=Path, default=ROOT)
    parser.add_argument("--baseline", type=Path, help="another checkout of the pack, measured in the same run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for label, pack in (("baseline", args.baseline), ("pack", args.pack)):
        if pack is not None:
            results[label] = measure(args.comfyui.resolve(), pack.resolve(), args.runs)
            print(f"{label}: {pack.resolve()}: import {results[label]['median_s']:.3f} s (median of {args.runs}: "
                  f"{results[label]['runs_s']}), heavy modules imported: {results[label]['heavy'] or 'none'}")
    if "baseline" in results:
        print(f"pack / baseline: {results['pack']['median_s'] / results['baseline']['median_s']:.2f}")


if __name__ == "__main__":
    main()
