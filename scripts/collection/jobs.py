"""The manifest: one row per job with a stable ``id`` (an image path, or a video file + frame index, ...).

A manifest is a JSON-lines file (one object per line), a CSV file with a header, or a folder of images (one job per
image, ``id`` = the path relative to the folder, ``image`` = the file). Every row needs a unique, non-empty ``id``.
A folder's images are the files ComfyUI's Load Image lists (an ``image/*`` type by name, as ``folder_paths``
filters its input folder); the other files are listed as skipped, with the reason.

A job is keyed by its content (``job_digest``): its row, with the bytes of every file the row names, and the run's
settings. A finished job's folder records the digest; ``--resume`` skips only the jobs whose digest is unchanged.
"""

import csv
import hashlib
import json
import mimetypes
import re
from pathlib import Path

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


def job_key(job_id: str) -> str:
    """The name of a job's output folder: the id itself when it is a plain file name (``a.png``), else the id with
    other characters replaced and a short hash of the id (``photos_a.png-3f2a1b9c``), so two ids never share a key."""
    job_id = str(job_id)
    if SAFE.fullmatch(job_id) and not job_id.endswith("."):
        return job_id
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", job_id).strip("._-")[:100] or "job"
    return f"{readable}-{hashlib.sha1(job_id.encode()).hexdigest()[:8]}"


def is_image_name(name: str) -> bool:
    """Whether ComfyUI lists the file as an image (folder_paths.filter_files_content_types: its type by name)."""
    kind, _ = mimetypes.guess_type(name, strict=False)
    return bool(kind) and kind.split("/")[0] == "image"


def read_manifest(path, skipped=None) -> list:
    """The rows of a manifest (see the module docstring), each a dict with a string ``id``; ValueError naming the
    row for a missing or repeated id. A folder's files that are not images are appended to ``skipped`` as
    ``(path relative to the folder, why)``."""
    path = Path(path)
    skipped = [] if skipped is None else skipped
    if path.is_dir():
        rows = []
        for p in sorted(path.rglob("*")):
            if not p.is_file() or any(part.startswith(".") for part in p.relative_to(path).parts):
                continue
            if is_image_name(p.name):
                rows.append({"id": p.relative_to(path).as_posix(), "image": str(p)})
            else:
                kind = mimetypes.guess_type(p.name, strict=False)[0] or "an unknown type"
                skipped.append((p.relative_to(path).as_posix(), f"{kind}, not an image type Load Image lists"))
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


def file_digest(path) -> str:
    """SHA-256 of a file's bytes (of every file under it, with their relative paths, for a folder)."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            digest.update(p.relative_to(path).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def settings_digest(*settings) -> str:
    """SHA-256 of JSON settings (sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def job_digest(job: dict, settings: str) -> str:
    """The job's content key: ``settings`` (the run's settings digest), its row, and the bytes of every file a value
    of the row names (a changed picture under the same name gives another digest)."""
    content = {}
    for name, value in sorted(job.items()):
        if isinstance(value, str) and value and Path(value).is_file():
            content[name] = {"file": file_digest(value)}
        else:
            content[name] = value
    return settings_digest(settings, content)
