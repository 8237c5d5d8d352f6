"""Servers started by tests die with the test process, even when it is killed with SIGKILL (a CI timeout): no ComfyUI
is left running. Checked on LocalComfyUI's own start-up code with a stand-in ``main.py`` that only answers
``/system_stats`` (a second or so instead of a real ComfyUI start)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = '''
import argparse, http.server, json
parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
args, _ = parser.parse_known_args()

class Stats(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"system": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("127.0.0.1", args.port), Stats).serve_forever()
'''
PARENT = '''
import sys, time
from scripts.local_comfyui import LocalComfyUI
engine = LocalComfyUI(sys.argv[1], sys.argv[2])
print(engine.proc.pid, flush=True)
time.sleep(600)
'''


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's (prctl PR_SET_PDEATHSIG)")
def test_a_server_dies_when_the_test_process_is_killed(tmp_path):
    comfyui = tmp_path / "stand_in_comfyui"
    comfyui.mkdir()
    (comfyui / "main.py").write_text(STAND_IN)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "work"), str(comfyui)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the stand-in server did not start: {line!r} {parent.stderr.read()[-2000:]}"
        server = int(line)
        assert alive(server)
        parent.kill()  # SIGKILL: no atexit, no fixture teardown runs
        parent.wait(timeout=30)
        deadline = time.time() + 30
        while alive(server) and time.time() < deadline:
            time.sleep(0.05)
        assert not alive(server), f"the server (pid {server}) outlived the killed test process"
    finally:
        if parent.poll() is None:
            parent.kill()
        if server is not None and alive(server):
            os.killpg(server, signal.SIGKILL)  # never leave it behind, even when the test fails
