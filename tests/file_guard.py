"""What the server may write: only its output folder. A snapshot of every other file of the test server's work
folder (input, models — following the links to the fixtures —, temp) and of the pack itself, compared before
and after a prompt: a file that appears, disappears or changes outside ``output/`` is a failure."""

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HASHED_UP_TO = 1 << 20  # bytes: smaller files are hashed on every snapshot, larger ones by size and mtime


def _fingerprint(path: Path, full: bool):
    stat = path.stat()
    if full or stat.st_size <= HASHED_UP_TO:
        return stat.st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    return stat.st_size, stat.st_mtime_ns


def _walk(root: Path, skip: set, full: bool) -> dict:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip and d not in ("__pycache__", ".git")]
        for name in filenames:
            path = here / name
            if path not in skip and not name.endswith(".pyc"):
                found[str(path.relative_to(root))] = _fingerprint(path, full)
    return found


def snapshot(comfy, full: bool = False) -> dict:
    """{file: fingerprint} for the server's work folder without ``output/`` and its log, and the pack tree."""
    work = comfy.dirs["output"].parent
    skip = {comfy.dirs["output"], work / "server.log", work / "custom_nodes"}  # custom_nodes/: a link to the pack, walked below
    pack_skip = {ROOT / ".venv", ROOT / ".cache", ROOT / ".venv-floors", ROOT / "output", ROOT / "demo_output"}
    files = {"work/" + k: v for k, v in _walk(work, skip, full).items()}
    files.update({"pack/" + k: v for k, v in _walk(ROOT, pack_skip, full).items()})
    files["work-parent"] = tuple(sorted(os.listdir(work.parent)))  # nothing written beside the work folder
    return files


def differences(before: dict, after: dict) -> dict:
    return {
        "appeared": sorted(set(after) - set(before)),
        "vanished": sorted(set(before) - set(after)),
        "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k]),
    }


def assert_unchanged(before: dict, after: dict) -> None:
    diff = differences(before, after)
    assert not any(diff.values()), f"files outside the output folder were touched: {diff}"
