"""What the label_collection tests check on any executor: every job's folder exactly once and complete, the files
decoded for comparison, the command line run as a separate driver process (killable by its pid)."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def make_photos(folder: Path, count: int, size=(40, 32), seed=21) -> list:
    """``count`` different random RGB photos (``p000.png`` …: the same names for every seed); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
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


# Ray's token authentication, as docs/labeller.md "A real cluster" sets it up: one token for the head and every
# process that joins it. Ray 2.60's `ray start --head` no longer writes a missing token (it refuses to start), so
# the tests make one, in the environment, never in the user's ~/.ray.
CLUSTER_TOKEN = secrets.token_hex(32)


def ray_environment() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": CLUSTER_TOKEN}


def start(args, log: Path) -> subprocess.Popen:
    """The driver as its own process group (``python -m scripts.label_collection``), output into ``log``."""
    return subprocess.Popen([sys.executable, "-m", "scripts.label_collection", *map(str, args)], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=ray_environment())  # the token of `ray start --head` (below)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """``ray start --head --block`` in a process group of its own, with its own temporary folder and ports (other
    Ray instances on the machine are left alone), as docs/labeller.md "A real cluster" describes; ``address`` is what
    ``--address`` takes. ``stop()`` ends that process group only (``ray stop`` would end every Ray of the machine)."""

    def __init__(self, workdir: Path, num_cpus: int = 4, timeout: float = 180):
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths are limited
        self.log = Path(workdir) / "ray-head.log"
        low = free_port()  # the workers' ports: low .. low + 200; every other port outside that range

        def outside():
            while (port := free_port()) in range(low, low + 201):
                pass
            return port

        port = outside()
        ports = {"--port": port, "--node-manager-port": outside(), "--object-manager-port": outside(),
                 "--dashboard-port": outside(), "--dashboard-agent-listen-port": outside(),
                 "--dashboard-agent-grpc-port": outside(), "--runtime-env-agent-port": outside(),
                 "--metrics-export-port": outside()}
        command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                   "--temp-dir", str(self.temp), "--num-cpus", str(num_cpus), "--include-dashboard", "false",
                   "--disable-usage-stats", "--min-worker-port", str(low), "--max-worker-port", str(low + 200)]
        command += [str(a) for item in ports.items() for a in item]
        self.proc = subprocess.Popen(command, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                                     env=ray_environment())
        self.address = f"127.0.0.1:{port}"
        deadline = time.time() + timeout
        while "--block" not in self.log.read_text() or "ray start --address" not in self.log.read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"ray start --head did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def group(self) -> set:
        """The pids of this head's process group."""
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getpgid(int(entry.name)) == self.proc.pid:
                        found.add(int(entry.name))
                except OSError:
                    pass
        return found

    def stop(self, grace: float = 5) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            deadline = time.time() + grace
            while self.group() and time.time() < deadline:
                time.sleep(0.2)
            if self.group():
                os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        deadline = time.time() + 30
        while self.group() and time.time() < deadline:  # killed processes are gone once reaped
            time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)


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
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # it had ended already (a run that failed early)
        pass
    proc.wait()


def restart(engine, timeout=180) -> None:
    """Start a killed test server (scripts/local_comfyui.LocalComfyUI) again: the same command, port and folders."""
    old = engine.proc
    engine.proc = subprocess.Popen(old.args, cwd=engine.build.path, stdout=open(engine.log_path, "a"),
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "DICEPTION_SD3_CONFIGS": str(ROOT / "tests" / "fixtures" / "diception" / "model" / "tiny_sd3")})
    deadline = time.time() + timeout
    while True:
        try:
            engine.client.get_json("/system_stats")
            return
        except OSError:
            assert engine.proc.poll() is None and time.time() < deadline, engine.log_path.read_text()[-3000:]
            time.sleep(0.3)


def check_exactly_once(out: Path, rows) -> dict:
    """Every job's folder exists once with the files its job.json lists, nothing half-written is left, and nothing
    else is there; returns {id: folder}."""
    found = complete(out)
    assert sorted(found) == sorted(row["id"] for row in rows)
    for job_id, folder in found.items():
        record = json.loads((folder / "job.json").read_text())
        assert sorted(p.name for p in folder.iterdir()) == sorted(record["files"] + ["job.json"]), folder
    assert not (out / ".partial").exists() or not any((out / ".partial").iterdir()), "half-written jobs left"
    extras = {"summary.json", ".partial", ".runs", ".prompt_cache", ".persam_reference.safetensors", ".superseded"}
    assert {p.name for p in out.iterdir()} - extras == {folder.name for folder in found.values()}
    return found


def decoded(path: Path) -> np.ndarray:
    return np.load(path) if path.suffix == ".npy" else np.asarray(Image.open(path))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A Ray cluster of the test session's own (``ray start --head`` in another process), joined by every run with
    ``--address`` (a plugin of tests/conftest.py, so both label_collection modules share it)."""
    # another Ray of the machine, as `ray stop` finds them (by process name): stopping the head must leave it alone
    other = subprocess.Popen(["bash", "-c", "exec -a raylet sleep 3600"], start_new_session=True)
    head = RayHead(tmp_path_factory.mktemp("ray"))
    try:
        yield head
    finally:
        head.stop()
        alive = other.poll() is None
        other.kill()
        other.wait()
    assert not head.group(), "the head's processes outlived its stop"
    assert alive, "stopping the head ended another Ray's process"
