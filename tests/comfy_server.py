"""A real ComfyUI server for node tests (the 2024-03 test engine, see scripts/get_test_comfyui.py).

The session fixture ``comfy`` starts ``main.py --cpu`` on a free loopback port with this pack linked into
its ``custom_nodes/``, separate input/output/temp folders and a model folder holding the tiny test
models; it stops the server by PID at the end. ``ComfyClient`` wraps the HTTP API.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
COMFYUI = Path(os.environ.get("COMFYUI_DIR", ROOT / ".cache" / "comfyui"))
PACK_NAME = "comfyui-diception-persam"


class ComfyError(Exception):
    """A prompt was refused (HTTP 400) or failed while executing."""

    def __init__(self, message, body=None):
        super().__init__(message)
        self.body = body


class ComfyClient:
    def __init__(self, url, dirs):
        self.url = url
        self.dirs = dirs
        self.client_id = uuid.uuid4().hex

    def _request(self, path, data=None, headers=None, timeout=60):
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def get_json(self, path):
        return json.loads(self._request(path))

    def object_info(self):
        return self.get_json("/object_info")

    def queue(self, prompt) -> str:
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        try:
            answer = json.loads(self._request("/prompt", body, {"Content-Type": "application/json"}))
        except urllib.error.HTTPError as e:
            payload = json.loads(e.read() or b"{}")
            raise ComfyError(f"/prompt refused ({e.code}): {json.dumps(payload)[:2000]}", payload) from None
        return answer["prompt_id"]

    def wait(self, prompt_id, timeout=600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt, timeout=600) -> dict:
        """Queue and wait; raise ComfyError with the server's message unless the status is success."""
        entry = self.wait(self.queue(prompt), timeout)
        if entry["status"]["status_str"] != "success":
            raise ComfyError(f"prompt failed: {json.dumps(entry['status']['messages'])[:3000]}", entry)
        return entry

    def interrupt(self):
        self._request("/interrupt", b"", {"Content-Type": "application/json"})

    def view(self, image: dict) -> bytes:
        query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
        return self._request(f"/view?{query}")

    def upload_image(self, path, name=None) -> str:
        boundary = uuid.uuid4().hex
        name = name or Path(path).name
        data = Path(path).read_bytes()
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + data + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n--{boundary}--\r\n'.encode()
        answer = json.loads(self._request("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return answer["name"]


def error_message(entry: dict) -> str:
    """The exception message of a failed prompt, from its /history entry."""
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return f"{data.get('exception_type')}: {data.get('exception_message')}"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_models(models: Path) -> None:
    """The tiny models of tests/fixtures in the layout users have under ComfyUI/models."""
    (models / "diception").mkdir(parents=True)
    (models / "sams").mkdir(parents=True)
    dice = FIXTURES / "diception" / "model"
    os.symlink(dice / "tiny_sd3", models / "diception" / "tiny_sd3")
    for suffix in ("pth", "safetensors"):
        os.symlink(dice / f"diception_tiny.{suffix}", models / "diception" / f"diception_tiny.{suffix}")
    persam = FIXTURES / "persam"
    for suffix in ("pth", "safetensors"):
        os.symlink(persam / f"tiny_sam.{suffix}", models / "sams" / f"tiny_sam.{suffix}")


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    if not (COMFYUI / "main.py").is_file():
        pytest.fail(f"no test-engine ComfyUI at {COMFYUI}: run `python scripts/get_test_comfyui.py` (see README)")
    link = COMFYUI / "custom_nodes" / PACK_NAME
    if link.is_symlink() and link.resolve() != ROOT:
        link.unlink()
    if not link.exists():
        os.symlink(ROOT, link, target_is_directory=True)

    base = tmp_path_factory.mktemp("comfy")
    dirs = {name: base / name for name in ("input", "output", "temp", "models")}
    for name in ("input", "output", "temp"):
        dirs[name].mkdir()
    link_models(dirs["models"])
    extra = base / "extra_model_paths.yaml"
    extra.write_text(f"tests:\n  base_path: {dirs['models']}\n  diception: diception\n  sams: sams\n")
    port = free_port()
    log = open(base / "server.log", "w")
    cmd = [
        sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
        "--input-directory", str(dirs["input"]), "--output-directory", str(dirs["output"]),
        "--temp-directory", str(dirs["temp"]), "--extra-model-paths-config", str(extra),
    ]
    proc = subprocess.Popen(cmd, cwd=COMFYUI, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = ComfyClient(f"http://127.0.0.1:{port}", dirs)
    deadline = time.time() + 120
    while True:
        try:
            client.get_json("/system_stats")
            break
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"ComfyUI did not start:\n{(base / 'server.log').read_text()[-4000:]}")
            time.sleep(0.5)
    client.log_path = base / "server.log"
    yield client
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def save_fixture_image(comfy: ComfyClient, source: Path, name: str) -> str:
    """Put an image into the server's input folder (as LoadImage expects) and return its name."""
    shutil.copy(source, comfy.dirs["input"] / name)
    return name
