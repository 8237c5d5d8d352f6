"""The ComfyUI executor: one job = one prompt of an API-format workflow on one of N ComfyUI servers.

Per job: take a slot (``server_slots``), upload the job's files, set its inputs (as ``queue_workflow.py --set``,
typed by the server's /object_info), queue the prompt, wait, download every output file into the job's folder
(``job_outputs``). The prompt id is derived from the job's content digest (``jobs.job_digest``: the workflow, every
setting, the job's row and the bytes of every file it names), and servers that keep a client's prompt id (ComfyUI
v0.8.0 does; the 2024-03 build makes its own) are asked for it first, so a retried job picks up the earlier prompt's
answer instead of queuing it again, and a different picture under the same name is never answered from another
job's history. A prompt that failed is never reused: the job is queued again under a fresh id. A server that cannot be reached for ``grace`` seconds is
dropped and the job goes to another; a prompt the server refuses or that fails is that job's error.
"""

import http.client
import json
import socket
import time
import urllib.error
import uuid
from pathlib import Path

from ..queue_workflow import ComfyClient, ComfyError, error_message, prepare_prompt, split_target
from .job_outputs import JobFolder, is_complete
from .jobs import file_digest, job_digest, job_key, result, settings_digest

NAMESPACE = uuid.UUID("6f1d2c1e-7a53-4c1b-9d0e-2a8f5b1c3d47")


class ServerDown(Exception):
    """The server did not answer (connection refused or reset, or no answer) for ``grace`` seconds."""


def target_text(node: str, name: str, value: str) -> str:
    """``NODE.INPUT=VALUE`` as ``split_target`` reads it back (NODE quoted when it holds a dot)."""
    return f"{json.dumps(node) if '.' in node else node}.{name}={value}"


def settings_of(workflow: dict, overrides, job_inputs, set_files) -> str:
    """The run's settings digest: the workflow, ``--set``, the ``--job-input`` mapping and each ``--set-file``'s bytes."""
    files = [(item, file_digest(split_target(item, "--set-file", "PATH")[2])) for item in set_files]
    return settings_digest(workflow, list(overrides), list(job_inputs), files)


class ComfyLabeler:
    """A Ray Data worker holding one server (``slots.hold()``); called with one manifest row at a time, from up to
    k threads (``slots`` bounds the prompts per server)."""

    def __init__(self, slots, workflow: dict, out_dir, overrides=(), job_inputs=(), set_files=(), timeout=3600.0,
                 poll=0.1, grace=10.0, settings=None):
        self.slots, self.workflow, self.out_dir = slots, workflow, Path(out_dir)
        self.overrides, self.timeout, self.poll, self.grace = list(overrides), timeout, poll, grace
        self.job_inputs = [split_target(item, "--job-input", "COLUMN") for item in job_inputs]
        self.set_files = [split_target(item, "--set-file", "PATH") for item in set_files]
        self.settings = settings or settings_of(workflow, overrides, job_inputs, set_files)
        self.object_info = {}  # per server URL
        self.uploaded = {}  # per server URL: the --set-file overrides once uploaded there
        self.server = slots.hold()

    @staticmethod
    def prompt_id(digest: str) -> str:
        return str(uuid.uuid5(NAMESPACE, digest))

    def __call__(self, row: dict) -> dict:
        job = json.loads(row["job"])
        job_id, key, started = job["id"], job_key(job["id"]), time.monotonic()
        try:
            digest = job_digest(job, self.settings)
        except OSError as e:
            return result(job_id, "failed", f"{type(e).__name__}: {e}"[:3000])
        if is_complete(self.out_dir, key, digest):
            return result(job_id, "skipped")
        while True:
            try:
                url = self.slots.acquire(self.server)
            except Exception as e:  # no server left alive: every remaining job fails with this
                return result(job_id, "failed", f"{type(e).__name__}: {e}"[:3000], seconds=time.monotonic() - started)
            finished = False
            try:
                self.run_on(url, job, key, digest)
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

    def run_on(self, url: str, job: dict, key: str, digest: str) -> None:
        client = ComfyClient(url)
        prompt_id = self.prompt_id(digest)
        entry = self.reach(url, lambda: client.finished(prompt_id))  # an earlier attempt's prompt, if kept
        if entry is not None and entry["status"]["status_str"] != "success":
            entry, prompt_id = None, str(uuid.uuid4())  # that attempt failed: run the job again, never replay it
        if entry is None and prompt_id not in self.reach(url, client.queued_ids):
            prompt = self.prompt_for(client, url, job, key)
            extra = {"label_collection": {"job": job["id"], "digest": digest}}
            prompt_id = self.reach(url, lambda: client.queue(prompt, prompt_id, extra))
        deadline = time.monotonic() + self.timeout
        while entry is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} on {url} did not finish in {self.timeout:g} s")
            time.sleep(self.poll)
            entry = self.reach(url, lambda: client.finished(prompt_id))
        if entry["status"]["status_str"] != "success":
            raise ComfyError(f"the workflow failed on {url}: {error_message(entry) or json.dumps(entry['status'])[:2000]}")
        self.save(client, url, entry, job, key, prompt_id, digest)

    def prompt_for(self, client, url: str, job: dict, key: str) -> dict:
        """The workflow with ``--set``, ``--set-file`` and this job's inputs: a file named by the job's column is
        uploaded (as ``<job key>-<its digest><suffix>``, never overwriting a file of the server's input folder) and
        its name set. A node, title, class or input the workflow does not have is an error naming it."""
        overrides = list(self.overrides) + self.file_overrides(client, url)
        for node, name, column in self.job_inputs:
            if column not in job:
                raise ValueError(f"--job-input {node}.{name}={column}: the job has no {column!r} (its keys: {', '.join(job)})")
            value = job[column]
            if isinstance(value, str) and Path(value).is_file():
                value = self.upload(client, url, value, key)
            overrides.append(target_text(node, name, value if isinstance(value, str) else json.dumps(value)))
        info = self.object_info.setdefault(url, {})
        return self.reach(url, lambda: prepare_prompt(client, self.workflow, overrides, info, strict=True))

    def upload(self, client, url: str, path: str, stem: str) -> str:
        name = f"{stem}-{file_digest(path)[:12]}{Path(path).suffix}"
        return self.reach(url, lambda: client.upload_image(path, name, overwrite=False))

    def file_overrides(self, client, url: str) -> list:
        """``--set-file NODE.INPUT=PATH``: PATH uploaded once per server (named by its digest), its name set."""
        if url not in self.uploaded:
            self.uploaded[url] = [target_text(node, name, self.upload(client, url, path, Path(path).stem))
                                  for node, name, path in self.set_files]
        return self.uploaded[url]

    def save(self, client, url, entry, job, key, prompt_id, digest) -> None:
        """Every output file the prompt lists, named ``<node id>_<filename prefix>_<n><suffix>`` in the job's folder."""
        with JobFolder(self.out_dir, key, job["id"], server=url, prompt_id=prompt_id, digest=digest) as folder:
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
