"""Label a whole collection on Ray: every job of a manifest through ComfyUI servers, or through the engine in-process.

    pip install ".[ray]"        # from the pack's folder: its requirements and Ray Data
    python -m scripts.label_collection comfy photos/ --out labels/ --workflow workflows/api/diception_depth.json \\
        --server http://gpu1:8188 --server http://gpu2:8188 --job-input LoadImage.image=image
    python -m scripts.label_collection comfy photos/ --out masks/ --workflow workflows/api/persam_segment.json \\
        --server http://gpu1:8188 --set-file 1.image=dog_rgba.png --job-input 2.image=image
    python -m scripts.label_collection engine photos/ --out labels/ diception --base models/diception/sd3 \\
        --checkpoint models/diception/DICEPTION_v1.pth --task depth --steps 1
    python -m scripts.label_collection engine photos/ --out masks/ persam --sam models/sams/sam_vit_h_4b8939.pth \\
        --reference dog.png --reference-mask dog_mask.png

The manifest is a folder of images, a JSON-lines file or a CSV file, one job per row with a stable ``id``
(scripts/collection/jobs.py). Each job's answers go to ``OUT/<job key>/`` (complete or absent); ``--resume`` skips
the jobs whose folder is complete for the same content (the job's files' bytes and every setting; a job whose input
changed, or that failed, runs again). A job that fails (unreadable image, a workflow error) is reported with its
error; the others go on. The summary (done / failed / skipped) is printed and written to ``OUT/summary.json``.
Run from the pack's folder (``python -m scripts.label_collection``) or as ``python scripts/label_collection.py``.
"""

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the pack's folder importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.collection.job_outputs import clear_partial, complete_keys  # noqa: E402
from scripts.collection.jobs import job_digest, job_key, read_manifest  # noqa: E402

TARGET = "NODE.INPUT"  # NODE: a node id (12), a node title ("Load Photo") or a class (LoadImage: every node of it)


def cluster_options(parser, default=None) -> None:
    """``--address`` / ``--num-cpus``, accepted before the subcommand and after it (``default``: SUPPRESS there, so
    a value given earlier is kept)."""
    parser.add_argument("--address", default=default,
                        help="Ray cluster to join: HEAD_IP:PORT of a `ray start --head` (or auto: the cluster this "
                             "machine's `ray start` joined); default: a local Ray for this run only")
    parser.add_argument("--num-cpus", type=float, default=default, help="logical CPUs of a local Ray (default: the machine's)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cluster_options(parser)
    sub = parser.add_subparsers(dest="executor", required=True)

    def common(p):
        p.add_argument("manifest", help="a folder of images, a .jsonl or a .csv file (one job per row, with an 'id')")
        p.add_argument("--out", required=True, help="output folder: one folder per job, named by the job id")
        p.add_argument("--resume", action="store_true", help="skip the jobs whose output is complete")
        p.add_argument("--rows-per-block", type=int, default=1, help="jobs per Ray task (more: less overhead per job)")
        cluster_options(p, argparse.SUPPRESS)

    comfy = sub.add_parser("comfy", help="ComfyUI servers over HTTP")
    common(comfy)
    comfy.add_argument("--workflow", required=True, help="API-format workflow JSON")
    comfy.add_argument("--server", action="append", required=True, help="ComfyUI URL (repeat for each server)")
    comfy.add_argument("--job-input", action="append", default=[], metavar=f"{TARGET}=COLUMN",
                       help="set an input from the job's column; a file there is uploaded (e.g. LoadImage.image=image, "
                            "or 2.image=image for node 2 only, or '\"Load Photo\".image=image' by its title)")
    comfy.add_argument("--set", action="append", default=[], metavar=f"{TARGET}=VALUE", help="as queue_workflow.py --set")
    comfy.add_argument("--set-file", action="append", default=[], metavar=f"{TARGET}=PATH",
                       help="upload a file once to every server and set the input to it (e.g. PerSAM's reference: 1.image=dog.png)")
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
    cluster_options(dice, argparse.SUPPRESS)
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
    cluster_options(persam, argparse.SUPPRESS)
    persam.add_argument("--sam", required=True, help="SAM checkpoint (.pth / .safetensors)")
    persam.add_argument("--reference", required=True, help="the reference image")
    persam.add_argument("--reference-mask", required=True, help="the subject's mask in the reference (white = subject)")
    persam.add_argument("--fine-tune", action="store_true", help="PerSAM-F")
    persam.add_argument("--max-instances", type=int, default=1)
    persam.add_argument("--overlap-stop", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.executor == "comfy":
        from scripts.collection.server_slots import normalise_url

        try:
            args.server = list(dict.fromkeys(normalise_url(url) for url in args.server))
        except ValueError as e:
            parser.error(str(e))
    return args


class RayOffTheConsole:
    """``with RayOffTheConsole(log) as console:`` what Ray writes to the process's stderr (its C++ core worker's
    lines, warnings) goes to ``log``; ``console`` is the real stderr, for the progress line and the notes."""

    def __init__(self, log: Path):
        self.log = log

    def __enter__(self):
        self.log.parent.mkdir(parents=True, exist_ok=True)
        sys.stderr.flush()
        self.saved = os.dup(2)
        target = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, 2)
        os.close(target)
        return os.fdopen(os.dup(self.saved), "w", buffering=1, encoding="utf-8", errors="replace")

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


class Progress:
    """One line on stderr, at most every ``interval`` seconds: done / failed / skipped of the total, jobs per second;
    ``note`` prints a line of its own above it (a server dropped or re-admitted)."""

    def __init__(self, total: int, interval: float = 1.0, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.interval, self.counts = total, interval, {"done": 0, "failed": 0, "skipped": 0}
        self.started = self.shown = time.monotonic()
        self.lock, self.line = threading.Lock(), ""

    def update(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        now = time.monotonic()
        if now - self.shown >= self.interval or sum(self.counts.values()) == self.total:
            self.shown = now
            finished = sum(self.counts.values())
            rate = finished / max(now - self.started, 1e-9)
            with self.lock:
                self.line = (f"{finished}/{self.total} jobs  done {self.counts['done']}  failed {self.counts['failed']}  "
                             f"skipped {self.counts['skipped']}  {rate:.1f}/s")
                print(f"\r{self.line}", end="", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        with self.lock:
            print(f"\r{text}".ljust(len(self.line) + 1), file=self.stream)
            print(f"\r{self.line}", end="", file=self.stream, flush=True)


def check_targets(args, workflow: dict) -> None:
    """Every NODE of ``--set`` / ``--job-input`` / ``--set-file`` is a node of the workflow (by id, title or class)
    and every INPUT one its class declares (from the first server that answers); ValueError naming it otherwise."""
    from scripts.queue_workflow import ComfyClient, find_nodes, split_target

    items = [(flag, item) for flag, items in (("--set", args.set), ("--job-input", args.job_input),
                                              ("--set-file", args.set_file)) for item in items]
    info = None
    for url in args.server:
        try:
            info = {cls: ComfyClient(url).get_json(f"/object_info/{cls}").get(cls, {})
                    for cls in {node["class_type"] for node in workflow.values()}}
            break
        except Exception:
            continue  # that server is down: the next, or the workers' own check per job
    for flag, item in items:
        node, name, value = split_target(item, flag, "PATH" if flag == "--set-file" else "VALUE")
        if flag == "--set-file" and not Path(value).is_file():
            raise ValueError(f"--set-file {item!r}: no file {value!r}")
        for node_id in find_nodes(workflow, node, flag, item):
            class_type = workflow[node_id]["class_type"]
            declared = info and info.get(class_type, {}).get("input", {})
            if declared and not any(name in declared.get(group, {}) for group in ("required", "optional")):
                known = [n for group in ("required", "optional") for n in declared.get(group, {})]
                raise ValueError(f"{flag} {item!r}: node {node_id} ({class_type}) has no input {name!r}; its inputs: "
                                 f"{', '.join(known)}")


def watch_servers(slots, progress: Progress, stop: threading.Event, every: float = 1.0) -> threading.Thread:
    """A thread that re-admits dropped servers that answer again and notes each drop / re-admission on the console."""
    from scripts.collection.server_slots import ServerWatch

    watch = ServerWatch(slots)

    def loop():
        while not stop.wait(every):
            try:
                for line in watch.step():
                    progress.note(line)
            except Exception as e:  # the slots actor ended with the run
                if not stop.is_set():
                    progress.note(f"server watch: {type(e).__name__}: {e}")
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


@dataclasses.dataclass(frozen=True)
class Executor:
    """What runs the jobs: the labeler class and its constructor arguments, how many workers with how many
    concurrent calls each and what each reserves of the cluster (CPUs, GPUs), the digest of the settings that
    shape every answer (part of each job's key), and the servers' slots (ComfyUI executor only, else None)."""

    labeler: type
    kwargs: dict
    workers: int
    concurrent: int
    cpus: float
    gpus: int
    settings: str
    slots: object = None


def executor(args, out_dir: Path) -> Executor:
    from scripts.collection import pipeline

    if args.executor == "comfy":
        from scripts.collection.comfy_labeler import ComfyLabeler, settings_of

        workflow = json.loads(Path(args.workflow).read_text(encoding="utf-8"))
        slots = pipeline.server_slots(args.server, args.in_flight)
        settings = settings_of(workflow, args.set, args.job_input, args.set_file)
        kwargs = dict(slots=slots, workflow=workflow, out_dir=str(out_dir), overrides=args.set,
                      job_inputs=args.job_input, set_files=[absolute_file(item) for item in args.set_file],
                      timeout=args.timeout, grace=args.grace, settings=settings)
        return Executor(ComfyLabeler, kwargs, workers=len(args.server), concurrent=args.in_flight, cpus=0.01, gpus=0,
                        settings=settings, slots=slots)
    from scripts.collection.engine_labeler import EngineLabeler, engine_settings

    import ray

    gpus = 0 if args.cpu else int(ray.cluster_resources().get("GPU", 0))
    settings = engine_settings(args, out_dir, device="cuda" if gpus else "cpu")
    return Executor(EngineLabeler, dict(settings=settings, out_dir=str(out_dir)), workers=args.workers or max(1, gpus),
                    concurrent=1, cpus=1 if not gpus else 0, gpus=1 if gpus else 0, settings=settings["digest"])


def absolute_file(item: str) -> str:
    from scripts.collection.comfy_labeler import target_text
    from scripts.queue_workflow import split_target

    node, name, path = split_target(item, "--set-file", "PATH")
    return target_text(node, name, str(Path(path).resolve()))


def unchanged(rows, already: dict, settings: str) -> set:
    """The keys of the jobs whose finished folder holds the answer for the job's current content."""
    same = set()
    for row in rows:
        key = job_key(row["id"])
        if key in already:
            try:
                if already[key] == job_digest(row, settings):
                    same.add(key)
            except OSError:
                pass  # its file is gone: the worker reports it
    return same


def run(args, rows, already: dict, out_dir: Path, console):
    """Label the jobs whose content changed or that have no finished folder; (summary, failures, skipped)."""
    from scripts.collection import pipeline

    pipeline.start(args.address, args.num_cpus)
    runner = executor(args, out_dir)
    slots = runner.slots
    same = unchanged(rows, already, runner.settings)
    todo = [row for row in rows if job_key(row["id"]) not in same]
    skipped = len(rows) - len(todo)
    progress = Progress(len(rows), stream=console)
    progress.counts["skipped"] = skipped
    failed, by_worker = [], {}
    stop = threading.Event()
    watcher = watch_servers(slots, progress, stop) if slots is not None else None
    try:
        for row in pipeline.label(todo, runner.labeler, runner.kwargs, runner.workers, runner.concurrent, runner.cpus,
                                  runner.gpus, args.rows_per_block):
            status = "done" if row["status"] == "skipped" else row["status"]  # completed by an earlier try of this run
            if status == "failed":
                failed.append({"id": row["id"], "error": row["error"], "server": row["server"]})
            if row["server"]:
                by_worker[row["server"]] = by_worker.get(row["server"], 0) + 1
            progress.update(status)
    finally:
        stop.set()
    if watcher is not None:
        watcher.join()
    summary = {"jobs": len(rows), "done": progress.counts["done"], "failed": len(failed), "skipped": skipped,
               "seconds": round(time.monotonic() - progress.started, 2), "failures": failed, "by_worker": by_worker}
    if slots is not None:
        summary["servers"] = slots.report()
    return summary, failed, skipped


def main(argv=None) -> int:
    args = parse_args(argv)
    not_images = []
    try:
        rows = read_manifest(args.manifest, not_images)
        if args.executor == "comfy":
            check_targets(args, json.loads(Path(args.workflow).read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, why in not_images:
        print(f"not a job: {name} ({why})", file=sys.stderr)
    out_dir = Path(args.out).resolve()
    already = complete_keys(out_dir)
    if already and not args.resume:
        print(f"error: {out_dir} already holds {len(already)} finished job(s); add --resume to skip them and run the "
              f"rest, or choose another --out", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_partial(out_dir)
    with RayOffTheConsole(out_dir / ".runs" / f"ray-{os.getpid()}.log") as console:
        summary, failed, skipped = run(args, rows, already, out_dir, console)
        print(file=console)
    clear_partial(out_dir)  # what a killed worker left half-written (its job was run again)
    summary["not_jobs"] = [{"file": name, "why": why} for name, why in not_images]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"done {summary['done']}, failed {summary['failed']}, skipped {skipped} (already done) of {len(rows)} jobs "
          f"in {summary['seconds']} s; summary in {out_dir / 'summary.json'}")
    for failure in failed:
        print(f"failed {failure['id']}: {failure['error']}")
    if not_images:
        print(f"not jobs: {len(not_images)} file(s) of the folder that are not images ({', '.join(n for n, _ in not_images[:10])}"
              f"{' ...' if len(not_images) > 10 else ''}; listed in the summary)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
