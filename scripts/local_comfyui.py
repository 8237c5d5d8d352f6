"""Start and stop a ComfyUI on a free loopback port (the node tests, scripts/make_workflows.py,
scripts/make_thumbnails.py, scripts/demo.py): the 2024-03 test engine (scripts/get_test_comfyui.py),
ComfyUI v0.8.0 (``.cache/comfyui-v0.8.0``, unpacked by scripts/setup.sh) or any ComfyUI folder named in
``COMFYUI_DIRS`` (see ``comfyui_builds``).

Nothing is written into the ComfyUI folder: the pack is linked into ``workdir/custom_nodes`` (added through
``--extra-model-paths-config``, which both builds read before loading custom nodes); input/output/temp folders,
the model folders (``diception/``, ``sams/``, ``checkpoints/``) and, where the build has them, the user folder
and database live under ``workdir``.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from .get_test_comfyui import DEFAULT_DEST
from .queue_workflow import ComfyClient

ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "comfyui-diception-persam"
TINY = ROOT / "tests" / "fixtures"
MINIATURE_SAM = ROOT / "scripts" / "miniature_sam"  # a trained miniature SAM (it segments the synthetic PerSeg)
MINIATURE_DICEPTION = ROOT / "scripts" / "miniature_diception" / "weights"  # a trained miniature DICEPTION (its world's scenes)
CURRENT = ROOT / ".cache" / "comfyui-v0.8.0"  # unpacked by scripts/setup.sh when ../shared has the snapshot
DIRS_VARIABLE = "COMFYUI_DIRS"


@dataclass(frozen=True)
class ComfyBuild:
    """A ComfyUI folder and what the tests call it: ``comfyui-2024-03``, ``comfyui-v0.8.0``, ..."""

    path: Path
    label: str
    version: tuple  # (major, minor, patch) from comfyui_version.py; (0, 0, 0) for builds older than versioning

    def at_least(self, *version) -> bool:
        return self.version >= tuple(version)


def describe(path: Path) -> ComfyBuild:
    path = Path(path).expanduser().resolve()
    found = re.search(r'__version__\s*=\s*"([^"]+)"', (path / "comfyui_version.py").read_text()) if (path / "comfyui_version.py").is_file() else None
    if found:
        numbers = tuple(int(n) for n in re.findall(r"\d+", found.group(1))[:3])
        return ComfyBuild(path, f"comfyui-v{found.group(1)}", numbers + (0,) * (3 - len(numbers)))
    return ComfyBuild(path, "comfyui-2024-03" if path == DEFAULT_DEST.resolve() else f"comfyui-{path.name}", (0, 0, 0))


def comfyui_builds() -> list:
    """Every ComfyUI the server tests run on: the 2024-03 test engine always, v0.8.0 when unpacked, and each folder
    of ``COMFYUI_DIRS`` (separated by ``os.pathsep``, e.g. ``COMFYUI_DIRS=~/ComfyUI``)."""
    paths = [DEFAULT_DEST] + ([CURRENT] if (CURRENT / "main.py").is_file() else [])
    paths += [Path(p).expanduser() for p in os.environ.get(DIRS_VARIABLE, "").split(os.pathsep) if p.strip()]
    builds, labels = [], set()
    for path in paths:
        build = describe(path)
        if build.path in (b.path for b in builds):
            continue
        label, n = build.label, 2
        while label in labels:
            label, n = f"{build.label}-{n}", n + 1
        labels.add(label)
        builds.append(ComfyBuild(build.path, label, build.version))
    return builds


class LocalClient(ComfyClient):
    """The client of a test server: it asks for a prompt's result soon after queueing it and then less and less often
    (10 ms, ×1.5, up to every 0.2 s), so the many short prompts of the tests do not each wait a whole 0.2 s poll."""

    __test__ = False

    def wait(self, prompt_id, timeout=600, poll=0.2) -> dict:
        deadline, pause = time.time() + timeout, 0.01
        while time.time() < deadline:
            entry = self.finished(prompt_id)
            if entry is not None:
                return entry
            time.sleep(pause)
            pause = min(pause * 1.5, poll)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")


PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent_pid: int):
    """A ``preexec_fn`` for servers started by tests: the kernel sends SIGKILL to the child when the process that
    started it dies, however it died (pytest killed with SIGKILL or by a CI timeout included). Linux only (None
    elsewhere: the server is then stopped by ``LocalComfyUI.stop`` alone). libc is looked up here, in the parent:
    the child only calls it (no import between fork and exec)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the tie was made
            os.kill(os.getpid(), signal.SIGKILL)

    return tie


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_tiny_models(models: Path) -> None:
    """The tiny random models of tests/fixtures, the miniature DICEPTION of scripts/miniature_diception and the
    miniature SAM of scripts/miniature_sam (with the config beside it that its loader reads), in the layout users have
    under ComfyUI/models."""
    (models / "diception").mkdir(parents=True, exist_ok=True)
    (models / "sams").mkdir(parents=True, exist_ok=True)
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    (models / "text_encoders").mkdir(parents=True, exist_ok=True)  # separate SD3 text encoders (current ComfyUI)
    (models / "clip").mkdir(parents=True, exist_ok=True)  # the same, older ComfyUI installs
    links = {
        models / "diception" / "tiny_sd3": TINY / "diception/model/tiny_sd3",
        models / "diception" / "diception_tiny.pth": TINY / "diception/model/diception_tiny.pth",
        models / "diception" / "diception_tiny.safetensors": TINY / "diception/model/diception_tiny.safetensors",
        models / "diception" / "diception_miniature": MINIATURE_DICEPTION / "base",
        models / "diception" / "diception_miniature.safetensors": MINIATURE_DICEPTION / "diception_miniature.safetensors",
        models / "sams" / "tiny_sam.pth": TINY / "persam/tiny_sam.pth",
        models / "sams" / "tiny_sam_config.json": TINY / "persam/tiny_sam_config.json",
        models / "sams" / "tiny_sam.safetensors": TINY / "persam/tiny_sam.safetensors",
        models / "sams" / "sam_miniature.safetensors": MINIATURE_SAM / "sam_miniature.safetensors",
        models / "sams" / "sam_miniature_config.json": MINIATURE_SAM / "sam_miniature_config.json",
    }
    for link, target in links.items():
        if not link.exists():
            os.symlink(target, link)


def link_pack(custom_nodes: Path, comfyui: Path) -> None:
    """Link this checkout into the test's own ``custom_nodes`` folder; refuse a second copy in the ComfyUI folder."""
    custom_nodes.mkdir(parents=True, exist_ok=True)
    if not (custom_nodes / PACK_NAME).exists():
        os.symlink(ROOT, custom_nodes / PACK_NAME, target_is_directory=True)
    stale = comfyui / "custom_nodes" / PACK_NAME
    if stale.is_symlink() and stale.resolve() == ROOT:
        stale.unlink()  # left by an older version of this harness
    installed = comfyui / "custom_nodes"
    copies = [entry for entry in installed.iterdir() if (entry / "nodes" / "diception_nodes.py").is_file()] if installed.is_dir() else []
    if copies:
        raise RuntimeError(
            f"{copies[0]} is a copy of this pack; the tests load this checkout ({ROOT}) and two copies would register "
            f"the same nodes. Move it out of {installed} while testing."
        )


def cli_flags(comfyui: Path) -> set:
    """The command-line flags this ComfyUI build knows (older builds lack --user-directory, --database-url)."""
    source = comfyui / "comfy" / "cli_args.py"
    return set(re.findall(r'"(--[a-z0-9-]+)"', source.read_text())) if source.is_file() else set()


class LocalComfyUI:
    """One ComfyUI server on a free loopback port with this pack linked in (``client``: a ``ComfyClient``)."""

    def __init__(self, workdir, comfyui=DEFAULT_DEST, startup_timeout=120, output=None):
        """``output``: another output folder (e.g. one shared by two servers) instead of ``workdir/output``."""
        self.build = comfyui if isinstance(comfyui, ComfyBuild) else describe(comfyui)
        comfyui = self.build.path
        if not (comfyui / "main.py").is_file():
            hint = ("run `python scripts/get_test_comfyui.py`" if comfyui == DEFAULT_DEST.resolve()
                    else f"check {DIRS_VARIABLE} (folders separated by {os.pathsep!r}) or run `bash scripts/setup.sh`")
            raise FileNotFoundError(f"no ComfyUI (main.py) at {comfyui}: {hint}")
        workdir = Path(workdir)
        self.dirs = {name: workdir / name for name in ("input", "output", "temp", "models", "user")}
        if output is not None:
            self.dirs["output"] = Path(output)
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        link_pack(workdir / "custom_nodes", comfyui)
        link_tiny_models(self.dirs["models"])
        extra = workdir / "extra_model_paths.yaml"
        extra.write_text(
            f"pack:\n  base_path: {self.dirs['models']}\n  diception: diception\n  sams: sams\n  checkpoints: checkpoints\n"
            "  text_encoders: text_encoders\n  clip: clip\n"
            f"tests:\n  custom_nodes: {workdir / 'custom_nodes'}\n"
        )
        port = free_port()
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "w")
        cmd = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
            "--input-directory", str(self.dirs["input"]), "--output-directory", str(self.dirs["output"]),
            "--temp-directory", str(self.dirs["temp"]), "--extra-model-paths-config", str(extra),
        ]
        flags = cli_flags(comfyui)
        if "--user-directory" in flags:
            cmd += ["--user-directory", str(self.dirs["user"])]
        if "--database-url" in flags:
            cmd += ["--database-url", f"sqlite:///{workdir / 'comfyui.db'}"]
        # SD3 single files are built with the tiny SD3 folder's configs (nodes/model_folders.py single_file_configs)
        env = {**os.environ, "DICEPTION_SD3_CONFIGS": str(TINY / "diception/model/tiny_sd3")}
        self.proc = subprocess.Popen(cmd, cwd=comfyui, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                     preexec_fn=die_with_parent(os.getpid()) if sys.platform == "linux" else None)
        self.client = LocalClient(f"http://127.0.0.1:{port}", self.dirs)
        self.client.log_path = self.log_path
        self.client.build = self.build
        deadline = time.time() + startup_timeout
        while True:
            try:
                self.client.get_json("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"ComfyUI did not start:\n{self.log_path.read_text()[-4000:]}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
