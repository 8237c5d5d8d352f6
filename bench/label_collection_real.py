"""Throughput of scripts/label_collection.py on this machine with real executors: 1 vs 2 real ComfyUI servers (the
test engine with the tiny models, the pack's depth workflow) and 1 vs 2 engine workers (the tiny DICEPTION on CPU),
each figure a ratio to the one-executor run of the same bench run. (bench/label_collection.py measures the executor
alone against stand-in servers, up to 8.)

    .venv/bin/python bench/label_collection_real.py                    # 24 jobs per run, ComfyUI v0.8.0 if present
    .venv/bin/python bench/label_collection_real.py --jobs 60 --steps 4

Prints, per run: jobs, steady jobs/s (between the first and the last answer: Ray's and the servers' start-up left
out) and the ratio to one executor. On a machine whose cores the executors share (CPU servers, CPU workers), two
executors cannot be much faster than one: the ratio says how much of the machine one executor leaves idle.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.collection import pipeline  # noqa: E402
from scripts.collection.comfy_labeler import ComfyLabeler  # noqa: E402
from scripts.collection.engine_labeler import EngineLabeler, engine_settings  # noqa: E402
from scripts.local_comfyui import LocalComfyUI, comfyui_builds  # noqa: E402

TINY = ROOT / "tests" / "fixtures" / "diception" / "model"


def photos(folder: Path, count: int) -> list:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"p{i:04}.png")
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def steady(labeler, kwargs, rows, workers, concurrent, cpus) -> dict:
    times = []
    for row in pipeline.label(rows, labeler, kwargs, workers, concurrent, cpus, 0):
        assert row["status"] == "done", row
        times.append(time.monotonic())
    return {"jobs": len(times), "jobs_per_s": round((len(times) - 1) / (times[-1] - times[0]), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--skip-comfy", action="store_true")
    parser.add_argument("--skip-engine", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="label_real_"))
    images = photos(work / "photos", args.jobs)
    pipeline.start(num_cpus=max(4, os.cpu_count()))
    print(f"CPU cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; {args.jobs} jobs per run, "
          f"{args.steps} step(s), 64x48 photos, tiny models")
    if not args.skip_comfy:
        build = [b for b in comfyui_builds() if "v0.8.0" in b.label] or comfyui_builds()
        servers = [LocalComfyUI(work / f"server{i}", build[0]) for i in range(2)]
        try:
            workflow = json.loads((ROOT / "workflows" / "api" / "diception_depth.json").read_text())
            sets = ["DiceptionLoad.base_model=tiny_sd3", "DiceptionLoad.checkpoint=diception_tiny.safetensors",
                    "DiceptionLoad.dtype=fp32", "DiceptionLoad.clip_l=auto", "DiceptionLoad.clip_g=auto",
                    "DiceptionLoad.t5xxl=auto", "DiceptionPerceiveTask.resolution=64", f"DiceptionPerceiveTask.steps={args.steps}"]
            one = None
            for n in (1, 2):
                rows = [{"id": f"comfy{n}/{p.name}", "image": str(p)} for p in images]
                urls = [s.client.url for s in servers[:n]]
                kwargs = dict(slots=pipeline.server_slots(urls, args.in_flight), workflow=workflow,
                              out_dir=str(work / f"comfy{n}"), overrides=sets, job_inputs=["LoadImage.image=image"])
                result = steady(ComfyLabeler, kwargs, rows, n, args.in_flight, 0.01)
                one = one or result["jobs_per_s"]
                print(json.dumps({"executor": f"{n} ComfyUI server(s) ({build[0].label})", **result,
                                  "ratio_to_one": round(result["jobs_per_s"] / one, 3)}), flush=True)
        finally:
            for server in servers:
                server.stop()
    if not args.skip_engine:
        options = SimpleNamespace(model="diception", dtype="fp32", base=str(TINY / "tiny_sd3"),
                                  checkpoint=str(TINY / "diception_tiny.safetensors"), task="depth", category="",
                                  steps=args.steps, guidance=1.0, seed=0, resolution=64, prompt_cache=None)
        one = None
        for n in (1, 2):
            out = work / f"engine{n}"
            settings = engine_settings(options, out, "cpu")
            rows = [{"id": f"engine{n}/{p.name}", "image": str(p)} for p in images]
            result = steady(EngineLabeler, dict(settings=settings, out_dir=str(out)), rows, n, 1, 1)
            one = one or result["jobs_per_s"]
            print(json.dumps({"executor": f"{n} engine worker(s) (CPU)", **result,
                              "ratio_to_one": round(result["jobs_per_s"] / one, 3)}), flush=True)


if __name__ == "__main__":
    main()
