"""Label a whole collection on Ray: every job of a manifest through ComfyUI servers, or through the engine in-process.

    pip install "comfyui-diception-persam[ray]"
    python -m scripts.label_collection comfy photos/ --out labels/ --workflow workflows/api/diception_depth.json \\
        --server http://gpu1:8188 --server http://gpu2:8188 --job-input LoadImage.image=image
    python -m scripts.label_collection engine photos/ --out labels/ diception --base models/diception/sd3 \\
        --checkpoint models/diception/DICEPTION_v1.pth --task depth --steps 1
    python -m scripts.label_collection engine photos/ --out masks/ persam --sam models/sams/sam_vit_h_4b8939.pth \\
        --reference dog.png --reference-mask dog_mask.png

The manifest is a folder of images, a JSON-lines file or a CSV file, one job per row with a stable ``id``
(scripts/collection/jobs.py). Each job's answers go to ``OUT/<job key>/`` (complete or absent); ``--resume`` skips
the jobs whose folder is complete. A job that fails (unreadable image, a workflow error) is reported with its
error; the others go on. The summary (done / failed / skipped) is printed and written to ``OUT/summary.json``.
Run from the pack's folder (``python -m scripts.label_collection``) or as ``python scripts/label_collection.py``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the pack's folder importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.collection.job_outputs import clear_partial, complete_keys  # noqa: E402
from scripts.collection.jobs import job_key, read_manifest  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="Ray cluster to join (e.g. auto, or HEAD:6379); default: a local one")
    parser.add_argument("--num-cpus", type=float, help="logical CPUs of a local Ray (default: the machine's)")
    sub = parser.add_subparsers(dest="executor", required=True)

    def common(p):
        p.add_argument("manifest", help="a folder of images, a .jsonl or a .csv file (one job per row, with an 'id')")
        p.add_argument("--out", required=True, help="output folder: one folder per job, named by the job id")
        p.add_argument("--resume", action="store_true", help="skip the jobs whose output is complete")
        p.add_argument("--rows-per-block", type=int, default=1, help="jobs per Ray task (more: less overhead per job)")

    comfy = sub.add_parser("comfy", help="ComfyUI servers over HTTP")
    common(comfy)
    comfy.add_argument("--workflow", required=True, help="API-format workflow JSON")
    comfy.add_argument("--server", action="append", required=True, help="ComfyUI URL (repeat for each server)")
    comfy.add_argument("--job-input", action="append", default=[], metavar="CLASS.INPUT=COLUMN",
                       help="set an input from the job's column; a file there is uploaded (e.g. LoadImage.image=image)")
    comfy.add_argument("--set", action="append", default=[], metavar="CLASS.INPUT=VALUE", help="as queue_workflow.py --set")
    comfy.add_argument("--in-flight", type=int, default=2, help="prompts queued at once per server (k)")
    comfy.add_argument("--timeout", type=float, default=3600, help="seconds one prompt may take")
    comfy.add_argument("--grace", type=float, default=10, help="seconds a server may be unreachable before it is dropped")

    engine = sub.add_parser("engine", help="the engine in-process (models/), one worker per GPU or CPU workers")
    common(engine)
    engine.add_argument("--workers", type=int, help="workers (default: one per GPU of the cluster, else 1)")
    engine.add_argument("--cpu", action="store_true", help="CPU workers even where GPUs are")
    engine.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    kind = engine.add_subparsers(dest="model", required=True)
    dice = kind.add_parser("diception", help="a DICEPTION task")
    dice.add_argument("--base", required=True, help="SD3-medium diffusers folder or single file")
    dice.add_argument("--checkpoint", required=True, help="DICEPTION_v1.pth or .safetensors")
    dice.add_argument("--task", default="depth")
    dice.add_argument("--category", default="", help="COCO class (semantic segmentation)")
    dice.add_argument("--steps", type=int, default=28)
    dice.add_argument("--guidance", type=float, default=2.0)
    dice.add_argument("--seed", type=int, default=0)
    dice.add_argument("--resolution", type=int, default=768)
    dice.add_argument("--prompt-cache", help="folder of cached prompt embeddings (default: OUT/.prompt_cache)")
    persam = kind.add_parser("persam", help="PerSAM / PerSAM-F with one reference")
    persam.add_argument("--sam", required=True, help="SAM checkpoint (.pth / .safetensors)")
    persam.add_argument("--reference", required=True, help="the reference image")
    persam.add_argument("--reference-mask", required=True, help="the subject's mask in the reference (white = subject)")
    persam.add_argument("--fine-tune", action="store_true", help="PerSAM-F")
    persam.add_argument("--max-instances", type=int, default=1)
    persam.add_argument("--overlap-stop", type=float, default=0.5)
    return parser.parse_args(argv)


class Progress:
    """One line on stderr, at most every ``interval`` seconds: done / failed / skipped of the total, jobs per second."""

    def __init__(self, total: int, interval: float = 1.0):
        self.total, self.interval, self.counts = total, interval, {"done": 0, "failed": 0, "skipped": 0}
        self.started = self.shown = time.monotonic()

    def update(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        now = time.monotonic()
        if now - self.shown >= self.interval or sum(self.counts.values()) == self.total:
            self.shown = now
            finished = sum(self.counts.values())
            rate = finished / max(now - self.started, 1e-9)
            print(f"\r{finished}/{self.total} jobs  done {self.counts['done']}  failed {self.counts['failed']}  "
                  f"skipped {self.counts['skipped']}  {rate:.1f}/s", end="", file=sys.stderr, flush=True)


def executor(args, out_dir: Path):
    """(labeler class, its constructor arguments, workers, concurrent calls per worker, CPUs, GPUs per worker)."""
    from scripts.collection import pipeline

    if args.executor == "comfy":
        from scripts.collection.comfy_labeler import ComfyLabeler

        workflow = json.loads(Path(args.workflow).read_text())
        slots = pipeline.server_slots(args.server, args.in_flight)
        kwargs = dict(slots=slots, workflow=workflow, out_dir=str(out_dir), overrides=args.set,
                      job_inputs=args.job_input, timeout=args.timeout, grace=args.grace)
        return ComfyLabeler, kwargs, len(args.server), args.in_flight, 0.01, 0, slots
    from scripts.collection.engine_labeler import EngineLabeler, engine_settings

    import ray

    gpus = 0 if args.cpu else int(ray.cluster_resources().get("GPU", 0))
    workers = args.workers or max(1, gpus)
    settings = engine_settings(args, out_dir, device="cuda" if gpus else "cpu")
    return EngineLabeler, dict(settings=settings, out_dir=str(out_dir)), workers, 1, 1 if not gpus else 0, 1 if gpus else 0, None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        rows = read_manifest(args.manifest)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.out).resolve()
    already = complete_keys(out_dir)
    if already and not args.resume:
        print(f"error: {out_dir} already holds {len(already)} finished job(s); add --resume to skip them and run the "
              f"rest, or choose another --out", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_partial(out_dir)
    todo = [row for row in rows if job_key(row["id"]) not in already]
    skipped = len(rows) - len(todo)
    from scripts.collection import pipeline

    pipeline.start(args.address, args.num_cpus)
    labeler, kwargs, workers, concurrent, cpus, gpus, slots = executor(args, out_dir)
    progress = Progress(len(rows))
    progress.counts["skipped"] = skipped
    failed, by_worker = [], {}
    for row in pipeline.label(todo, labeler, kwargs, workers, concurrent, cpus, gpus, args.rows_per_block):
        status = "done" if row["status"] == "skipped" else row["status"]  # completed by an earlier try of this run
        if status == "failed":
            failed.append({"id": row["id"], "error": row["error"], "server": row["server"]})
        if row["server"]:
            by_worker[row["server"]] = by_worker.get(row["server"], 0) + 1
        progress.update(status)
    print(file=sys.stderr)
    clear_partial(out_dir)  # what a killed worker left half-written (its job was run again)
    summary = {"jobs": len(rows), "done": progress.counts["done"], "failed": len(failed), "skipped": skipped,
               "seconds": round(time.monotonic() - progress.started, 2), "failures": failed,
               "by_worker": by_worker}
    if slots is not None:
        summary["servers"] = slots.report()
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"done {summary['done']}, failed {summary['failed']}, skipped {skipped} (already done) of {len(rows)} jobs "
          f"in {summary['seconds']} s; summary in {out_dir / 'summary.json'}")
    for failure in failed:
        print(f"failed {failure['id']}: {failure['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
