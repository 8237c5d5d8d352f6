"""The ComfyUI executor: one job = one prompt of an API-format workflow on one of N ComfyUI servers.

Per job: take a slot (``server_slots``), upload the job's files, set its inputs (as ``queue_workflow.py --set``,
typed by the server's /object_info), queue the prompt, wait, download every output file into the job's folder
(``job_outputs``). The prompt id is derived from the job id and the workflow, and servers that keep a client's
prompt id (ComfyUI v0.8.0 does; the 2024-03 build makes its own) are asked for it first, so a retried job picks up
the earlier prompt's answer instead of queuing it again. A server that cannot be reached for ``grace`` seconds is
dropped and the job goes to another; a prompt the server refuses or that fails is that job's error.
"""

import hashlib
import http.client
import json
import socket
import time
import urllib.error
import uuid
from pathlib import Path

from ..queue_workflow import ComfyClient, ComfyError, error_message, prepare_prompt
from .job_outputs import JobFolder, is_complete
from .jobs import job_key, result

NAMESPACE = uuid.UUID("6f1d2c1e-7a53-4c1b-9d0e-2a8f5b1c3d47")


class ServerDown(Exception):
    """The server did not answer (connection refused or reset, or no answer) for ``grace`` seconds."""


def split_assignment(item: str, flag: str):
    target, sep, column = item.partition("=")
    if not sep or "." not in target or not column:
        raise ValueError(f"{flag} {item!r}: expected CLASS.INPUT=COLUMN (e.g. LoadImage.image=image)")
    return target, column


class ComfyLabeler:
    """A Ray Data worker holding one server (``slots.hold()``); called with one manifest row at a time, from up to
    k threads (``slots`` bounds the prompts per server)."""

    def __init__(self, slots, workflow: dict, out_dir, overrides=(), job_inputs=(), timeout=3600.0, poll=0.1,
                 grace=10.0):
        self.slots, self.workflow, self.out_dir = slots, workflow, Path(out_dir)
        self.overrides, self.timeout, self.poll, self.grace = list(overrides), timeout, poll, grace
        self.job_inputs = [split_assignment(item, "--job-input") for item in job_inputs]
        settings = json.dumps([workflow, self.overrides, self.job_inputs], sort_keys=True)
        self.digest = hashlib.sha1(settings.encode()).hexdigest()[:16]
        self.object_info = {}  # per server URL
        self.server = slots.hold()

    def prompt_id(self, job_id: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.digest}/{job_id}"))

    def __call__(self, row: dict) -> dict:
        job = json.loads(row["job"])
        job_id, key, started = job["id"], job_key(job["id"]), time.monotonic()
        if is_complete(self.out_dir, key):
            return result(job_id, "skipped")
        while True:
            try:
                url = self.slots.acquire(self.server)
            except Exception as e:  # no server left alive: every remaining job fails with this
                return result(job_id, "failed", f"{type(e).__name__}: {e}"[:3000], seconds=time.monotonic() - started)
            finished = False
            try:
                self.run_on(url, job, key)
                finished = True
                return result(job_id, "done", server=url, seconds=time.monotonic() - started)
            except ServerDown as e:
                self.slots.drop(url, str(e))
                if url == self.server:
                    self.server = self.slots.hold()
            except Exception as e:  # this job's error (bad input, a failing workflow): the run goes on
                finished = True
                return result(job_id, "failed", f"{type(e).__name__}: {e}"[:3000], url, time.monotonic() - started)
            finally:
                self.slots.release(url, finished)

    def reach(self, url: str, request):
        """``request()``, retried while the server cannot be reached; ServerDown after ``grace`` seconds."""
        deadline = time.monotonic() + self.grace
        while True:
            try:
                return request()
            except urllib.error.HTTPError:
                raise  # the server answered
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError) as e:
                if time.monotonic() > deadline:
                    raise ServerDown(f"{url} unreachable for {self.grace:g} s: {e}") from None
                time.sleep(min(0.5, self.grace / 4))

    def run_on(self, url: str, job: dict, key: str) -> None:
        client = ComfyClient(url)
        prompt_id = self.prompt_id(job["id"])
        entry = self.reach(url, lambda: client.finished(prompt_id))  # an earlier attempt's prompt, if kept
        if entry is None and prompt_id not in self.reach(url, client.queued_ids):
            prompt = self.prompt_for(client, url, job, key)
            extra = {"label_collection": {"job": job["id"], "workflow": self.digest}}
            prompt_id = self.reach(url, lambda: client.queue(prompt, prompt_id, extra))
        deadline = time.monotonic() + self.timeout
        while entry is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} on {url} did not finish in {self.timeout:g} s")
            time.sleep(self.poll)
            entry = self.reach(url, lambda: client.finished(prompt_id))
        if entry["status"]["status_str"] != "success":
            raise ComfyError(f"the workflow failed on {url}: {error_message(entry) or json.dumps(entry['status'])[:2000]}")
        self.save(client, url, entry, job, key, prompt_id)

    def prompt_for(self, client, url: str, job: dict, key: str) -> dict:
        """The workflow with ``--set`` and this job's inputs: a file named by the job's column is uploaded (as
        ``<job key><suffix>``, never overwriting a file of the server's input folder) and its name set."""
        overrides = list(self.overrides)
        for target, column in self.job_inputs:
            if column not in job:
                raise ValueError(f"--job-input {target}={column}: the job has no {column!r} (its keys: {', '.join(job)})")
            value = job[column]
            if isinstance(value, str) and Path(value).is_file():
                value = self.reach(url, lambda: client.upload_image(value, f"{key}{Path(value).suffix}", overwrite=False))
            overrides.append(f"{target}={value if isinstance(value, str) else json.dumps(value)}")
        info = self.object_info.setdefault(url, {})
        return self.reach(url, lambda: prepare_prompt(client, self.workflow, overrides, info))

    def save(self, client, url, entry, job, key, prompt_id) -> None:
        """Every output file the prompt lists, named ``<node id>_<filename prefix>_<n><suffix>`` in the job's folder."""
        with JobFolder(self.out_dir, key, job["id"], server=url, prompt_id=prompt_id) as folder:
            for node_id, output in entry["outputs"].items():
                prefix = self.workflow.get(node_id, {}).get("inputs", {}).get("filename_prefix")
                stem = f"{node_id}_{Path(prefix).name}" if isinstance(prefix, str) and Path(prefix).name else str(node_id)
                counts = {}
                for items in output.values():
                    for item in items if isinstance(items, list) else []:
                        if isinstance(item, dict) and "filename" in item:
                            suffix = Path(item["filename"]).suffix
                            n = counts[suffix] = counts.get(suffix, -1) + 1
                            data = self.reach(url, lambda: client.view({"subfolder": "", "type": "output", **item}))
                            folder.write_bytes(f"{stem}_{n}{suffix}", data)
