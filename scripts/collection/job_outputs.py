"""A job's answers on disk: ``OUT/<job key>/`` holds its files and ``job.json`` (id, where it ran, the files).

The files are written into ``OUT/.partial/<key>.<random>/`` and the folder is renamed into place in one step, so a
job's folder is complete or absent, whatever is killed when. A second attempt of the same job (a retried task, a
re-run after the driver was killed) finds the folder there and leaves it as it is: each job's output exists once.
``job.json`` records the job's content digest (``jobs.job_digest``): a folder is the job's answer only for that
digest. A folder of an older digest (the picture or a setting changed) is moved to ``OUT/.superseded/`` when the new
answer is placed, never deleted.
"""

import json
import os
import shutil
import uuid
from pathlib import Path

MARKER = "job.json"
PARTIAL = ".partial"
SUPERSEDED = ".superseded"


def recorded_digest(out_dir, key: str):
    """The digest a complete job folder records ("" for a folder of an older version without one), None when the
    folder is not complete."""
    try:
        return json.loads((Path(out_dir) / key / MARKER).read_text()).get("digest", "")
    except (OSError, ValueError):
        return None


def is_complete(out_dir, key: str, digest=None) -> bool:
    """Whether the job's folder is complete (and, given ``digest``, holds the answer for that content)."""
    found = recorded_digest(out_dir, key)
    return found is not None and (digest is None or found == digest)


def complete_keys(out_dir) -> dict:
    """{key: recorded digest} of every complete job folder under ``out_dir``."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return {}
    found = {}
    for entry in os.scandir(out_dir):
        if entry.is_dir() and not entry.name.startswith("."):
            digest = recorded_digest(out_dir, entry.name)
            if digest is not None:
                found[entry.name] = digest
    return found


def clear_partial(out_dir) -> None:
    """Remove what killed runs left half-written (only the ``.partial`` folder this module writes)."""
    shutil.rmtree(Path(out_dir) / PARTIAL, ignore_errors=True)


class JobFolder:
    """``with JobFolder(out, key, job_id) as folder: folder.write_bytes(name, data)`` … the folder appears on exit
    (not on an exception). ``placed`` says whether this attempt's folder became the job's (False: already done)."""

    def __init__(self, out_dir, key: str, job_id: str, **record):
        self.out_dir, self.key = Path(out_dir), key
        self.record = {"id": job_id, **record, "files": []}
        self.digest = record.get("digest")
        self.tmp = self.out_dir / PARTIAL / f"{key}.{uuid.uuid4().hex[:12]}"
        self.placed = False

    def __enter__(self):
        self.tmp.mkdir(parents=True)
        return self

    def path(self, name: str) -> Path:
        """Where to write the file ``name`` (a plain file name) inside the job's temporary folder."""
        if Path(name).name != name or name in (MARKER, "", ".", ".."):
            raise ValueError(f"output file name: expected a plain file name other than {MARKER!r}, got {name!r}")
        self.record["files"].append(name)
        return self.tmp / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        target = self.path(name)
        target.write_bytes(data)
        return target

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                (self.tmp / MARKER).write_text(json.dumps(self.record, indent=1))
                self.set_aside_stale()
                try:
                    os.rename(self.tmp, self.out_dir / self.key)
                    self.placed = True
                except OSError:
                    if not is_complete(self.out_dir, self.key):
                        raise
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def set_aside_stale(self) -> None:
        """Move a complete folder of another digest (an older answer of this job) to ``OUT/.superseded/``."""
        found = recorded_digest(self.out_dir, self.key)
        if self.digest is None or found is None or found == self.digest:
            return
        aside = self.out_dir / SUPERSEDED / f"{self.key}.{(found or 'old')[:12]}.{uuid.uuid4().hex[:8]}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self.out_dir / self.key, aside)
        except FileNotFoundError:
            pass  # another attempt moved it first


class RunLog:
    """``OUT/.runs/<host>-<pid>.jsonl``: one line when a worker starts a job and one when it ends it (status, whether
    its folder was placed), appended as whole lines; shows which worker ran what, and how often."""

    def __init__(self, out_dir, worker: str):
        folder = Path(out_dir) / ".runs"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{worker}.jsonl"

    def write(self, **record) -> None:
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def read_runs(out_dir) -> list:
    """Every line of every worker's run log."""
    return [json.loads(line) for path in sorted((Path(out_dir) / ".runs").glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
