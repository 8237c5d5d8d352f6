"""A stand-in ComfyUI for the label_collection benchmark: the HTTP API the executor uses (/prompt with a client
prompt id, /queue, /history, /object_info, /upload/image, /view), executing prompts one at a time like ComfyUI,
each taking a fixed ``latency``. Its one output per prompt is the uploaded image's bytes (LoadImage → SaveImage).

    python bench/comfy_standin.py --port 8190 --latency 0.2
"""

import argparse
import json
import queue
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

OBJECT_INFO = {
    "LoadImage": {"input": {"required": {"image": [[], {}]}}, "output": ["IMAGE", "MASK"]},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}, "output": []},
}
WORKFLOW = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "standin"}}}


class StandIn:
    def __init__(self, latency: float):
        self.latency, self.files, self.history, self.pending = latency, {}, {}, queue.Queue()
        self.running, self.waiting, self.lock, self.counter = None, [], threading.Lock(), 0
        threading.Thread(target=self.execute, daemon=True).start()

    def execute(self):
        while True:
            prompt_id, prompt = self.pending.get()
            with self.lock:
                self.waiting.remove(prompt_id)
                self.running = prompt_id
            time.sleep(self.latency)
            image = next(n["inputs"]["image"] for n in prompt.values() if n["class_type"] == "LoadImage")
            with self.lock:
                self.counter += 1
                name = f"standin_{self.counter:05}_.png"
                self.files[("output", name)] = self.files.get(("input", image), b"")
                self.history[prompt_id] = {
                    "prompt": [self.counter, prompt_id, prompt, {}, ["2"]],
                    "outputs": {"2": {"images": [{"filename": name, "subfolder": "", "type": "output"}]}},
                    "status": {"status_str": "success", "completed": True, "messages": []},
                }
                self.running = None


def handler(state: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, body, kind="application/json", code=200):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            if url.path.startswith("/history/"):
                prompt_id = url.path.split("/", 2)[2]
                with state.lock:
                    entry = state.history.get(prompt_id)
                return self.reply({prompt_id: entry} if entry else {})
            if url.path == "/queue":
                with state.lock:
                    running = [[0, state.running]] if state.running else []
                    pending = [[0, p] for p in state.waiting]
                return self.reply({"queue_running": running, "queue_pending": pending})
            if url.path.startswith("/object_info"):
                name = url.path.rsplit("/", 1)[1]
                return self.reply({name: OBJECT_INFO[name]} if name in OBJECT_INFO else OBJECT_INFO)
            if url.path == "/view":
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                return self.reply(state.files.get((query.get("type", "output"), query["filename"]), b""), "image/png")
            if url.path == "/system_stats":
                return self.reply({"system": {}})
            self.reply({"error": "not found"}, code=404)

        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/prompt":
                body = json.loads(data)
                prompt_id = str(body.get("prompt_id") or uuid.uuid4())
                with state.lock:
                    state.waiting.append(prompt_id)
                state.pending.put((prompt_id, body["prompt"]))
                return self.reply({"prompt_id": prompt_id, "number": 0, "node_errors": {}})
            if self.path == "/upload/image":
                name = re.search(rb'filename="([^"]+)"', data).group(1).decode()
                start = data.index(b"\r\n\r\n") + 4
                end = data.index(b"\r\n--", start)
                with state.lock:
                    state.files[("input", name)] = data[start:end]
                return self.reply({"name": name, "subfolder": "", "type": "input"})
            self.reply({"error": "not found"}, code=404)

    return Handler


def serve(port: int, latency: float):
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(StandIn(latency)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    serve(args.port, args.latency)
