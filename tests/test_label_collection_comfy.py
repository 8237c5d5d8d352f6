"""scripts/label_collection.py over two real ComfyUI servers (the test engine with the tiny models) on Ray Data:
every job once and equal to the same job queued alone with queue_workflow.py, both servers working; a server
SIGKILLed after a quarter of the jobs; the driver SIGKILLed at half-way and resumed.

About 2–4 minutes per ComfyUI build on a quiet 2-core machine (two servers, 61 jobs alone, four Ray runs)."""

import json
import re
from concurrent.futures import ThreadPoolExecutor
import shutil
import urllib.request

import pytest

from label_collection_checks import check_exactly_once, decoded, kill_group, make_photos, run, start, wait_for, write_manifest
from scripts import queue_workflow
from scripts.local_comfyui import ROOT, LocalComfyUI

JOBS = 60
IN_FLIGHT = 2
WORKFLOW = ROOT / "workflows" / "api" / "diception_depth.json"
TINY = [
    "DiceptionLoad.base_model=tiny_sd3", "DiceptionLoad.checkpoint=diception_tiny.safetensors", "DiceptionLoad.dtype=fp32",
    "DiceptionPerceiveTask.resolution=64", "DiceptionPerceiveTask.steps=1",
]


@pytest.fixture(scope="module")
def servers(comfy_build, tmp_path_factory):
    engines = []
    try:
        for i in range(2):
            engines.append(LocalComfyUI(tmp_path_factory.mktemp(f"label-{comfy_build.label}-{i}"), comfy_build))
        yield engines
    finally:
        for engine in engines:
            engine.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), JOBS)


@pytest.fixture(scope="module")
def alone(servers, photos, tmp_path_factory):
    """Each photo's outputs from queue_workflow.py alone (as ``alone_<name>``: a new input name, so the server runs
    the whole graph again rather than answering from its cache), by file kind (``diception_depth.png`` …)."""
    root = tmp_path_factory.mktemp("alone")

    def queue_alone(photo, engine):
        copy = root / f"alone_{photo.name}"
        shutil.copy(photo, copy)
        out = root / photo.stem
        sets = TINY + [f"LoadImage.image={copy.name}"]
        code = queue_workflow.main([str(WORKFLOW), "--port", engine.client.url.rsplit(":", 1)[1], "--image", str(copy),
                                    "--out", str(out)] + [a for s in sets for a in ("--set", s)])
        assert code == 0
        return photo.name, {re.sub(r"_\d{5}_?(\.\w+)$", r"\1", p.name): decoded(p) for p in out.iterdir()}

    with ThreadPoolExecutor(len(servers)) as pool:  # one job at a time per server, as queue_workflow.py alone
        return dict(pool.map(queue_alone, photos, [servers[i % len(servers)] for i in range(len(photos))]))


def command(servers, manifest, out, *more):
    args = ["--num-cpus", 4, "comfy", manifest, "--out", out, "--workflow", WORKFLOW, "--in-flight", IN_FLIGHT,
            "--grace", 3, "--job-input", "LoadImage.image=image", *more]
    for engine in servers:
        args += ["--server", engine.client.url]
    for item in TINY:
        args += ["--set", item]
    return args


def check_equal_to_alone(found: dict, alone: dict) -> None:
    for job_id, folder in found.items():
        files = {re.sub(r"^\d+_(.*)_\d+(\.\w+)$", r"\1\2", p.name): p for p in folder.iterdir() if p.name != "job.json"}
        expected = alone[job_id.split("/")[-1]]
        assert sorted(files) == sorted(expected), job_id
        for kind, path in files.items():
            assert (decoded(path) == expected[kind]).all(), f"{job_id}: {kind} differs from the job queued alone"


def runs_per_job(servers, tag: str) -> dict:
    """How many prompts of each job (of this test's ``tag``) the servers still alive executed, from /history."""
    counts = {}
    for engine in servers:
        if engine.proc.poll() is not None:
            continue
        with urllib.request.urlopen(engine.client.url + "/history", timeout=30) as answer:
            history = json.loads(answer.read())
        for entry in history.values():
            job = (entry["prompt"][3].get("label_collection") or {}).get("job", "")
            if job.startswith(tag + "/"):
                counts[job] = counts.get(job, 0) + 1
    return counts


def test_two_servers_label_every_job_once_as_queued_alone(servers, photos, alone, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    rows = write_manifest(tmp_path / "jobs.jsonl", "all", photos, [{"id": "all/broken.png", "image": str(broken)}])
    out = tmp_path / "out"
    code = run(command(servers, tmp_path / "jobs.jsonl", out), tmp_path / "run.log")
    assert code == 1, (tmp_path / "run.log").read_text()[-3000:]  # one job failed
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (JOBS, 1, 0)
    failure = summary["failures"][0]
    assert failure["id"] == "all/broken.png" and "cannot identify image file" in failure["error"], failure  # its own error
    found = check_exactly_once(out, rows[:-1])
    check_equal_to_alone(found, alone)
    per_server = {engine.client.url: summary["servers"]["jobs"][engine.client.url] for engine in servers}
    assert all(n > 0 for n in per_server.values()) and sum(per_server.values()) == JOBS + 1, per_server
    assert {json.loads((f / "job.json").read_text())["server"] for f in found.values()} == set(per_server)
    runs = runs_per_job(servers, "all")
    assert runs == {row["id"]: 1 for row in rows}, {k: v for k, v in runs.items() if v != 1}


def test_driver_killed_at_half_way_then_resumed(servers, photos, alone, tmp_path):
    rows = write_manifest(tmp_path / "jobs.jsonl", "resume", photos)
    out = tmp_path / "out"
    driver = start(command(servers, tmp_path / "jobs.jsonl", out), tmp_path / "first.log")
    wait_for(out, JOBS // 2, driver, tmp_path / "first.log")
    kill_group(driver)
    code = run(command(servers, tmp_path / "jobs.jsonl", out, "--resume"), tmp_path / "resume.log")
    assert code == 0, (tmp_path / "resume.log").read_text()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] >= JOBS // 2 and summary["done"] + summary["skipped"] == JOBS and summary["failed"] == 0
    check_equal_to_alone(check_exactly_once(out, rows), alone)
    runs = runs_per_job(servers, "resume")
    assert sorted(runs) == sorted(row["id"] for row in rows)
    twice = [job for job, n in runs.items() if n > 1]
    assert len(twice) <= len(servers) * IN_FLIGHT and max(runs.values()) <= 2, runs  # only those in flight at the kill


def test_a_server_killed_after_a_quarter(servers, photos, alone, tmp_path):
    rows = write_manifest(tmp_path / "jobs.jsonl", "kill", photos)
    out = tmp_path / "out"
    driver = start(command(servers, tmp_path / "jobs.jsonl", out), tmp_path / "run.log")
    wait_for(out, JOBS // 4, driver, tmp_path / "run.log")
    victim = servers[1]
    kill_group(victim.proc)  # SIGKILL by its pid (the server runs in its own process group)
    try:
        code = driver.wait(timeout=600)
    except Exception:
        kill_group(driver)
        raise
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (JOBS, 0)
    assert list(summary["servers"]["dead"]) == [victim.client.url]
    check_equal_to_alone(check_exactly_once(out, rows), alone)
