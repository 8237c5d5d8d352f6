"""What the label_collection tests check on any executor: every job's folder exactly once and complete, the files
decoded for comparison, the command line run as a separate driver process (killable by its pid)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def make_photos(folder: Path, count: int, size=(40, 32)) -> list:
    """``count`` different random RGB photos; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(21)
    paths = []
    for i in range(count):
        path = folder / f"p{i:03}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def write_manifest(path: Path, tag: str, photos, extra=()) -> list:
    """A JSON-lines manifest: id ``tag/<file name>`` and the image; returns the rows."""
    rows = [{"id": f"{tag}/{p.name}", "image": str(p)} for p in photos] + list(extra)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def start(args, log: Path) -> subprocess.Popen:
    """The driver as its own process group (``python -m scripts.label_collection``), output into ``log``."""
    return subprocess.Popen([sys.executable, "-m", "scripts.label_collection", *map(str, args)], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def run(args, log: Path, timeout=600) -> int:
    proc = start(args, log)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the run did not finish in {timeout} s:\n{log.read_text()[-3000:]}") from None


def complete(out: Path) -> dict:
    """{job id: its folder} for every complete job folder."""
    found = {}
    for marker in out.glob("*/job.json"):
        found.setdefault(json.loads(marker.read_text())["id"], []).append(marker.parent)
    assert all(len(folders) == 1 for folders in found.values()), {k: v for k, v in found.items() if len(v) > 1}
    return {job_id: folders[0] for job_id, folders in found.items()}


def wait_for(out: Path, count: int, proc: subprocess.Popen, log: Path, timeout=600) -> None:
    deadline = time.time() + timeout
    while len(complete(out)) < count:
        assert proc.poll() is None, f"the run ended before {count} jobs were done:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"fewer than {count} jobs done in {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def check_exactly_once(out: Path, rows) -> dict:
    """Every job's folder exists once with the files its job.json lists, nothing half-written is left, and nothing
    else is there; returns {id: folder}."""
    found = complete(out)
    assert sorted(found) == sorted(row["id"] for row in rows)
    for job_id, folder in found.items():
        record = json.loads((folder / "job.json").read_text())
        assert sorted(p.name for p in folder.iterdir()) == sorted(record["files"] + ["job.json"]), folder
    assert not (out / ".partial").exists() or not any((out / ".partial").iterdir()), "half-written jobs left"
    extras = {"summary.json", ".partial", ".runs", ".prompt_cache", ".persam_reference.safetensors"}
    assert {p.name for p in out.iterdir()} - extras == {folder.name for folder in found.values()}
    return found


def decoded(path: Path) -> np.ndarray:
    return np.load(path) if path.suffix == ".npy" else np.asarray(Image.open(path))
