"""scripts/label_collection.py over two real ComfyUI servers (the test engine with the tiny models) on Ray Data,
shared by every test of the module, as is a Ray cluster of the session's own (``ray start --head`` in another
process, own temporary folder and ports, joined with ``--address``, stopped without touching another Ray): every job
once and equal to the same job queued alone with queue_workflow.py, both servers working, on every ComfyUI build
(prompt ids, history and errors as each build reports them); on the newest build only, since the rest is the
labeller's own logic over the same HTTP contract: jobs keyed by content (collection A then collection B with the
same names and other pictures; a failed job fixed then resumed); a typo in a node or input name; the shipped PerSAM
workflow with its reference fixed and one photo per job; a server SIGKILLed mid-run, restarted and re-admitted
(its jobs held by a test node until then, so the run outlasts the restart however fast the machine is). A driver
SIGKILLed at half-way and resumed is the driver's rule, the same for both executors: test_label_collection_engine.py.
The other builds get one server (their HTTP contract); the newest two (the labeller's use of several)."""

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import graphs
from comfy_server import BUILDS, FIXTURES
from PIL import Image

from label_collection_checks import (check_exactly_once, complete, decoded, kill_group, make_photos, restart, run,
                                     start, write_manifest)
from scripts import queue_workflow
from scripts.local_comfyui import ROOT, LocalComfyUI

JOBS = 8
IN_FLIGHT = 2
WORKFLOW = ROOT / "workflows" / "api" / "diception_depth.json"
TINY = [  # the tiny test models (graphs.TINY) answering in one step
    *(s for s in graphs.TINY if s.startswith("DiceptionLoad.")), "DiceptionPerceiveTask.resolution=64",
    "DiceptionPerceiveTask.steps=1",
]


HOLD_NODES = Path(__file__).resolve().parent / "hold_nodes"


LABELLER_LOGIC = pytest.mark.newest_build("the labeller's own logic over the same HTTP contract; every build runs "
                                         "test_the_servers_label_every_job_once_as_queued_alone")


@pytest.fixture(scope="module")
def servers(comfy_build, tmp_path_factory):
    """Two servers of the newest build, one of another (its HTTP contract: the first test runs there too), each with
    tests/hold_nodes beside the pack."""
    engines = []
    try:
        for i in range(2 if comfy_build.path == BUILDS[-1].path else 1):
            workdir = tmp_path_factory.mktemp(f"label-{comfy_build.label}-{i}")
            (workdir / "custom_nodes").mkdir()
            (workdir / "custom_nodes" / "hold_nodes").symlink_to(HOLD_NODES, target_is_directory=True)
            engines.append(LocalComfyUI(workdir, comfy_build))
        yield engines
    finally:
        for engine in engines:
            engine.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos"), JOBS)


@pytest.fixture(scope="module")
def alone(servers, tmp_path_factory):
    """``alone(photo)``: the photo's outputs from queue_workflow.py alone (as ``alone_<n>_<name>``: a new input name,
    so the server runs the whole graph again rather than answering from its cache), by file kind
    (``diception_depth.png`` …); each photo queued once per module, on the servers in turn."""
    root, done = tmp_path_factory.mktemp("alone"), {}

    def outputs(photo):
        data = photo.read_bytes()
        if data not in done:
            n = len(done)
            copy = root / f"alone_{n}_{photo.name}"
            copy.write_bytes(data)
            out = root / f"out_{n}"
            sets = TINY + [f"LoadImage.image={copy.name}"]
            engine = servers[n % len(servers)]
            code = queue_workflow.main([str(WORKFLOW), "--port", engine.client.url.rsplit(":", 1)[1], "--image", str(copy),
                                        "--out", str(out)] + [a for s in sets for a in ("--set", s)])
            assert code == 0
            done[data] = {re.sub(r"_\d{5}_?(\.\w+)$", r"\1", p.name): decoded(p) for p in out.iterdir()}
        return done[data]

    return outputs


def command(servers, manifest, out, *more, urls=None, cluster=None):
    args = ["--address", cluster.address] if cluster else ["--num-cpus", 4]
    args += ["comfy", manifest, "--out", out, "--workflow", WORKFLOW, "--in-flight", IN_FLIGHT,
            "--grace", 3, "--job-input", "LoadImage.image=image"]
    for item in TINY:  # first: a test's own --set (in ``more``) comes later and wins
        args += ["--set", item]
    for url in urls or [engine.client.url for engine in servers]:
        args += ["--server", url]
    return args + list(more)


def check_equal_to_alone(found: dict, rows, alone) -> None:
    images = {row["id"]: row["image"] for row in rows}
    for job_id, folder in found.items():
        files = {re.sub(r"^\d+_(.*)_\d+(\.\w+)$", r"\1\2", p.name): p for p in folder.iterdir() if p.name != "job.json"}
        expected = alone(Path(images[job_id]))
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


def console_lines(log) -> list:
    """The lines a user sees (the progress line's redraws, after a carriage return, count as one line each)."""
    return [part for line in log.read_text().splitlines() for part in line.split("\r") if part.strip()]


def check_clean_console(log) -> None:
    """Only the labeller's own lines: the progress line, server notes, the summary (no Ray INFO / C++ log lines)."""
    own = re.compile(r"^(\d+/\d+ jobs  done|server http\S+ (dropped|re-admitted) at|done \d+, failed|failed |not a job|not jobs)")
    stray = [line for line in console_lines(log) if not own.match(line.strip())]
    assert not stray, stray


def test_the_servers_label_every_job_once_as_queued_alone(servers, photos, alone, cluster, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    rows = write_manifest(tmp_path / "jobs.jsonl", "all", photos, [{"id": "all/broken.png", "image": str(broken)}])
    out = tmp_path / "out"
    urls = [servers[0].client.url + "/"] + [e.client.url for e in servers[1:]]  # a trailing slash: the same server
    code = run(command(servers, tmp_path / "jobs.jsonl", out, urls=urls, cluster=cluster), tmp_path / "run.log")
    assert code == 1, (tmp_path / "run.log").read_text()[-3000:]  # one job failed
    check_clean_console(tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (JOBS, 1, 0)
    failure = summary["failures"][0]
    assert failure["id"] == "all/broken.png" and "cannot identify image file" in failure["error"], failure  # its own error
    found = check_exactly_once(out, rows[:-1])
    check_equal_to_alone(found, rows, alone)
    per_server = {engine.client.url: summary["servers"]["jobs"][engine.client.url] for engine in servers}
    assert all(n > 0 for n in per_server.values()) and sum(per_server.values()) == JOBS + 1, per_server
    assert {json.loads((f / "job.json").read_text())["server"] for f in found.values()} == set(per_server)
    runs = runs_per_job(servers, "all")
    assert runs == {row["id"]: 1 for row in rows}, {k: v for k, v in runs.items() if v != 1}


@LABELLER_LOGIC
def test_jobs_are_keyed_by_content_a_then_b_and_a_fixed_failure_resumed(servers, alone, cluster, tmp_path):
    """Collection A, then collection B (same file names, other pictures) into another --out on the same servers:
    B's answers are B's (the prompt id was the job id's: B got A's answers from the servers' history). One of B's
    files is a text file at first: resumed after it is replaced by a picture, that job runs again (the server's
    recorded error was replayed) and nothing else does."""
    a = make_photos(tmp_path / "a", 3, seed=1)
    b = make_photos(tmp_path / "b", 4, seed=2)
    (b[-1]).write_bytes(b"a text file named .png")
    rows_a = write_manifest(tmp_path / "a.jsonl", "ab", a)
    rows_b = write_manifest(tmp_path / "b.jsonl", "ab", b)
    assert run(command(servers, tmp_path / "a.jsonl", tmp_path / "out_a", cluster=cluster), tmp_path / "a.log") == 0
    assert run(command(servers, tmp_path / "b.jsonl", tmp_path / "out_b", cluster=cluster), tmp_path / "b.log") == 1
    summary = json.loads((tmp_path / "out_b" / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (3, 1) and summary["failures"][0]["id"] == rows_b[-1]["id"]
    check_equal_to_alone(check_exactly_once(tmp_path / "out_a", rows_a), rows_a, alone)
    check_equal_to_alone(check_exactly_once(tmp_path / "out_b", rows_b[:-1]), rows_b, alone)
    make_photos(tmp_path / "fixed", 1, seed=3)[0].replace(b[-1])  # the user fixes the file
    code = run(command(servers, tmp_path / "b.jsonl", tmp_path / "out_b", "--resume", cluster=cluster), tmp_path / "resume.log")
    assert code == 0, (tmp_path / "resume.log").read_text()[-3000:]
    summary = json.loads((tmp_path / "out_b" / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (1, 0, 3)
    check_equal_to_alone(check_exactly_once(tmp_path / "out_b", rows_b), rows_b, alone)


@LABELLER_LOGIC
def test_a_typo_in_a_node_or_input_name_is_an_error_naming_it(servers, photos, tmp_path):
    write_manifest(tmp_path / "jobs.jsonl", "typo", photos[:2])
    for target, expected in (("LoadImages.image", "the workflow has no node 'LoadImages'"),
                             ("LoadImage.imag", "has no input 'imag'; its inputs: image")):
        args = command(servers, tmp_path / "jobs.jsonl", tmp_path / "out", "--job-input", f"{target}=image")
        done = subprocess.run([sys.executable, "-m", "scripts.label_collection", *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert "1 LoadImage" in done.stderr or "inputs: image" in done.stderr  # what the workflow has
    assert not (tmp_path / "out").exists()  # nothing ran


@LABELLER_LOGIC
def test_the_shipped_persam_workflow_with_a_fixed_reference_and_a_photo_per_job(servers, cluster, tmp_path):
    """workflows/api/persam_segment.json: node 1 loads the reference (its mask from the alpha channel), node 2 each
    job's photo. Setting LoadImage.image replaced both (every job failed: the mask's size differs from the image's)."""
    data = FIXTURES / "persam" / "data"
    reference = Image.open(data / "ref.png").convert("RGB")
    alpha = np.where(np.asarray(Image.open(data / "ref_mask.png"))[..., 0] > 0, 0, 255).astype(np.uint8)  # mask = 1 - alpha
    reference.putalpha(Image.fromarray(alpha))
    reference.save(tmp_path / "reference.png")
    test = Image.open(data / "test1.png").convert("RGB")
    photos = tmp_path / "photos"
    photos.mkdir()
    variants = {"test1.png": test, "mirrored.png": test.transpose(Image.FLIP_LEFT_RIGHT), "cropped.png": test.crop((8, 8, 200, 160))}
    for name, image in variants.items():
        image.save(photos / name)
    out = tmp_path / "out"
    args = ["comfy", photos, "--out", out, "--workflow", ROOT / "workflows" / "api" / "persam_segment.json",
            "--set-file", f"1.image={tmp_path / 'reference.png'}", "--job-input", "2.image=image",
            "--set", "3.checkpoint=tiny_sam.pth", "--server", servers[0].client.url,
            "--address", cluster.address]  # after the subcommand, where users put it
    code = run(args, tmp_path / "run.log")
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    found = check_exactly_once(out, [{"id": name} for name in variants])
    subject = False
    for name, image in variants.items():
        (mask,) = [p for p in found[name].iterdir() if p.name.startswith("8_persam_mask")]
        values = decoded(mask)
        assert values.shape[:2] == (image.height, image.width), name  # the job's photo, not the reference
        subject |= bool(values.max() == 255)
    assert subject  # the subject was found somewhere: not empty masks


@LABELLER_LOGIC
def test_a_server_killed_mid_run_is_readmitted_once_restarted(servers, cluster, tmp_path):
    """Every job is held at a test node while ``hold`` exists. Server 2 is SIGKILLed with its jobs in flight:
    dropped (one console line), restarted on its port, probed and re-admitted (one line); then the hold is released
    and the restarted server finishes jobs again."""
    hold = tmp_path / "hold"
    hold.touch()
    workflow = tmp_path / "held.json"
    workflow.write_text(json.dumps({
        "1": {"class_type": "LoadImage", "inputs": {"image": "none.png"}},
        "2": {"class_type": "TestHoldWhileFileExists", "inputs": {"image": ["1", 0], "path": str(hold)}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "held"}},
    }))
    rows = write_manifest(tmp_path / "jobs.jsonl", "restart", make_photos(tmp_path / "photos", JOBS, seed=4))
    out, log = tmp_path / "out", tmp_path / "run.log"
    args = ["--address", cluster.address, "comfy", tmp_path / "jobs.jsonl", "--out", out, "--workflow", workflow,
            "--in-flight", IN_FLIGHT, "--grace", 3, "--job-input", "1.image=image"]
    driver = start(args + [a for engine in servers for a in ("--server", engine.client.url)], log)
    victim = servers[1]
    try:
        wait_for_line(log, "held", driver, lambda: held_prompts(victim) == IN_FLIGHT)
        kill_group(victim.proc)  # SIGKILL by its pid (the server runs in its own process group)
        wait_for_line(log, "dropped", driver)
        restart(victim)
        wait_for_line(log, "re-admitted", driver)
        assert not complete(out), "a job finished while every job was held"
        hold.unlink()
        code = driver.wait(timeout=300)
    except BaseException:
        kill_group(driver)
        raise
    assert code == 0, log.read_text()[-3000:]
    check_clean_console(log)
    notes = [line for line in console_lines(log) if line.startswith("server ")]
    assert [n.split()[2] for n in notes] == ["dropped", "re-admitted"] and all(victim.client.url in n for n in notes), notes
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (len(rows), 0) and not summary["servers"]["dead"]
    found = check_exactly_once(out, rows)
    assert any(json.loads((f / "job.json").read_text())["server"] == victim.client.url for f in found.values()), \
        "the restarted server got no job after its re-admission"


def held_prompts(engine) -> int:
    """How many prompts the server has running or pending (its /queue)."""
    queue = engine.client.get_json("/queue")
    return len(queue["queue_running"]) + len(queue["queue_pending"])


def wait_for_line(log, word, driver, ready=None, timeout=180) -> None:
    """Until the console shows a server note with ``word`` (or ``ready()`` holds), while the driver runs."""
    deadline = time.time() + timeout
    while not (ready() if ready else any(line.startswith("server ") and f" {word} " in line for line in console_lines(log))):
        assert driver.poll() is None and time.time() < deadline, f"waiting for {word!r}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
