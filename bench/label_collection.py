"""Benchmark of scripts/label_collection.py's ComfyUI executor on Ray Data, with stand-in servers of fixed latency
(bench/comfy_standin.py: one prompt at a time, ``--latency`` s each), so that only the executor is measured.

    .venv/bin/python bench/label_collection.py                # 1, 2, 4, 8 servers at 0.2 s/job; 10 000 jobs at 0 s
    .venv/bin/python bench/label_collection.py --servers 1 2 --memory-jobs 2000

Prints, per number of servers N: steady throughput (jobs/s between the first and the last answer, Ray's start-up
left out), its ratio to N × one server's (target ≥ 0.9) and the executor's overhead per job in ms (time per job per
server less the latency). Then the driver's resident memory every 1 000 jobs of a long run at zero latency (flat =
the driver holds no per-job state beyond the manifest), and the time per job there, when the executor itself (HTTP,
Ray, writing the files) is all there is.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from comfy_standin import WORKFLOW  # noqa: E402
from scripts.collection import pipeline  # noqa: E402
from scripts.collection.comfy_labeler import ComfyLabeler  # noqa: E402
from scripts.local_comfyui import free_port  # noqa: E402


def start_servers(count: int, latency: float) -> list:
    procs = []
    for _ in range(count):
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "comfy_standin.py"), "--port", str(port),
                                 "--latency", str(latency)])
        procs.append((proc, f"http://127.0.0.1:{port}"))
    for _, url in procs:
        for _ in range(100):
            try:
                import urllib.request

                urllib.request.urlopen(url + "/queue", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
    return procs


def run(urls, jobs: int, in_flight: int, image: Path, work: Path, tag: str, on_answer=None):
    """Label ``jobs`` jobs; returns the monotonic times at which the answers reached the driver."""
    out = work / tag
    rows = [{"id": f"{tag}/{i:06}", "image": str(image)} for i in range(jobs)]
    slots = pipeline.server_slots(urls, in_flight)
    kwargs = dict(slots=slots, workflow=WORKFLOW, out_dir=str(out), job_inputs=["LoadImage.image=image"])
    times = []
    for row in pipeline.label(rows, ComfyLabeler, kwargs, len(urls), in_flight, 0.01, 0):
        assert row["status"] == "done", row
        times.append(time.monotonic())
        if on_answer:
            on_answer(len(times))
    return times


def steady(times) -> float:
    """Jobs per second between the first and the last answer."""
    return (len(times) - 1) / (times[-1] - times[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--jobs-per-server", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--memory-jobs", type=int, default=10000)
    parser.add_argument("--memory-servers", type=int, default=4)
    args = parser.parse_args()
    pipeline.start(num_cpus=max(4, os.cpu_count()))
    work = Path(tempfile.mkdtemp(prefix="label_bench_"))
    image = work / "image.png"
    image.write_bytes(b"stand-in image")
    print(f"CPU cores: {os.cpu_count()}; latency {args.latency} s/job; {args.in_flight} prompts in flight per server")
    one = None
    results = []
    for n in args.servers:
        procs = start_servers(n, args.latency)
        try:
            times = run([url for _, url in procs], args.jobs_per_server * n, args.in_flight, image, work, f"n{n}")
        finally:
            for proc, _ in procs:
                proc.kill()
        rate = steady(times)
        one = one or (rate if n == 1 else None)
        overhead_ms = (n / rate - args.latency) * 1000
        ratio = rate / (n * one) if one else float("nan")
        results.append({"servers": n, "jobs": len(times), "jobs_per_s": round(rate, 2), "ratio_to_n_x_one": round(ratio, 3),
                        "overhead_ms_per_job": round(overhead_ms, 1)})
        print(json.dumps(results[-1]), flush=True)

    if args.memory_jobs < 2:
        return
    procs = start_servers(args.memory_servers, 0.0)
    me = psutil.Process()
    samples = []

    def sample(done):
        if done % 1000 == 0:
            samples.append((done, round(me.memory_info().rss / 2**20, 1)))
            print(f"  {done} jobs: driver RSS {samples[-1][1]} MiB", flush=True)

    try:
        times = run([url for _, url in procs], args.memory_jobs, args.in_flight, image, work, "memory", sample)
    finally:
        for proc, _ in procs:
            proc.kill()
    rate = steady(times)
    growth = samples[-1][1] - samples[0][1] if len(samples) > 1 else 0.0
    print(json.dumps({"memory_jobs": len(times), "servers": args.memory_servers, "latency": 0.0, "jobs_per_s": round(rate, 1),
                      "ms_per_job_at_saturation": round(1000 / rate, 1),
                      "driver_rss_mib": samples, "growth_mib_after_first_1000": round(growth, 1)}))


if __name__ == "__main__":
    main()
