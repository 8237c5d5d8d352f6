"""Start and stop the test-engine ComfyUI (2024-03, from scripts/get_test_comfyui.py) on a free loopback port.

The pack is linked into its ``custom_nodes/``; input/output/temp folders and an extra model folder
(``diception/``, ``sams/``) live under ``workdir``, so nothing is written into the ComfyUI copy but the link.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

from .get_test_comfyui import DEFAULT_DEST
from .queue_workflow import ComfyClient

ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "comfyui-diception-persam"
TINY = ROOT / "tests" / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_tiny_models(models: Path) -> None:
    """The tiny random models of tests/fixtures, in the layout users have under ComfyUI/models."""
    (models / "diception").mkdir(parents=True, exist_ok=True)
    (models / "sams").mkdir(parents=True, exist_ok=True)
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    (models / "text_encoders").mkdir(parents=True, exist_ok=True)  # separate SD3 text encoders (current ComfyUI)
    (models / "clip").mkdir(parents=True, exist_ok=True)  # the same, older ComfyUI installs
    links = {
        models / "diception" / "tiny_sd3": TINY / "diception/model/tiny_sd3",
        models / "diception" / "diception_tiny.pth": TINY / "diception/model/diception_tiny.pth",
        models / "diception" / "diception_tiny.safetensors": TINY / "diception/model/diception_tiny.safetensors",
        models / "sams" / "tiny_sam.pth": TINY / "persam/tiny_sam.pth",
        models / "sams" / "tiny_sam_config.json": TINY / "persam/tiny_sam_config.json",
        models / "sams" / "tiny_sam.safetensors": TINY / "persam/tiny_sam.safetensors",
    }
    for link, target in links.items():
        if not link.exists():
            os.symlink(target, link)


class TestEngine:
    def __init__(self, workdir, comfyui=DEFAULT_DEST, startup_timeout=120):
        comfyui = Path(os.environ.get("COMFYUI_DIR", comfyui))
        if not (comfyui / "main.py").is_file():
            raise FileNotFoundError(f"no test-engine ComfyUI at {comfyui}: run `python scripts/get_test_comfyui.py`")
        link = comfyui / "custom_nodes" / PACK_NAME
        if link.is_symlink() and link.resolve() != ROOT:
            link.unlink()
        if not link.exists():
            os.symlink(ROOT, link, target_is_directory=True)
        workdir = Path(workdir)
        self.dirs = {name: workdir / name for name in ("input", "output", "temp", "models")}
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        link_tiny_models(self.dirs["models"])
        extra = workdir / "extra_model_paths.yaml"
        extra.write_text(
            f"pack:\n  base_path: {self.dirs['models']}\n  diception: diception\n  sams: sams\n  checkpoints: checkpoints\n"
            "  text_encoders: text_encoders\n  clip: clip\n"
        )
        port = free_port()
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "w")
        cmd = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
            "--input-directory", str(self.dirs["input"]), "--output-directory", str(self.dirs["output"]),
            "--temp-directory", str(self.dirs["temp"]), "--extra-model-paths-config", str(extra),
        ]
        # SD3 single files are built with the tiny SD3 folder's configs (nodes/model_folders.py single_file_configs)
        env = {**os.environ, "DICEPTION_SD3_CONFIGS": str(TINY / "diception/model/tiny_sd3")}
        self.proc = subprocess.Popen(cmd, cwd=comfyui, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.client = ComfyClient(f"http://127.0.0.1:{port}", self.dirs)
        self.client.log_path = self.log_path
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
