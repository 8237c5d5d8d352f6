"""The manifest: one row per job with a stable ``id`` (an image path, or a video file + frame index, ...).

A manifest is a JSON-lines file (one object per line), a CSV file with a header, or a folder of images (one job per
image, ``id`` = the path relative to the folder, ``image`` = the file). Every row needs a unique, non-empty ``id``.
"""

import csv
import hashlib
import json
import re
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


def job_key(job_id: str) -> str:
    """The name of a job's output folder: the id itself when it is a plain file name (``a.png``), else the id with
    other characters replaced and a short hash of the id (``photos_a.png-3f2a1b9c``), so two ids never share a key."""
    job_id = str(job_id)
    if SAFE.fullmatch(job_id) and not job_id.endswith("."):
        return job_id
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", job_id).strip("._-")[:100] or "job"
    return f"{readable}-{hashlib.sha1(job_id.encode()).hexdigest()[:8]}"


def read_manifest(path) -> list:
    """The rows of a manifest (see the module docstring), each a dict with a string ``id``; ValueError naming the
    row for a missing or repeated id."""
    path = Path(path)
    if path.is_dir():
        rows = [{"id": p.relative_to(path).as_posix(), "image": str(p)}
                for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"manifest {path}: line {n} is not JSON ({e.msg}); expected one object per line") from None
    seen = {}
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or row.get("id") in (None, ""):
            raise ValueError(f"manifest {path}: row {n} has no 'id'; every job needs a stable, unique id (e.g. the image path)")
        row["id"] = str(row["id"])
        key = job_key(row["id"])
        if key in seen:
            raise ValueError(f"manifest {path}: rows {seen[key]} and {n} have the same id {row['id']!r}")
        seen[key] = n
    return rows


def result(job_id, status, error="", server="", seconds=0.0) -> dict:
    """What a worker answers for one job: ``status`` done / failed (with ``error``) / skipped (already complete),
    ``server`` where it ran (a ComfyUI URL, or the engine worker's host-pid)."""
    return {"id": job_id, "status": status, "error": error, "server": server, "seconds": float(seconds)}
