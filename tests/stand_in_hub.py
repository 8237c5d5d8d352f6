"""A local HTTP server that plays the Hugging Face hub (``HF_ENDPOINT``) and Meta's file host
(``SAM_DOWNLOAD_ENDPOINT``) for the download tests: never the internet.

Like the hub, ``/<repo>/resolve/main/<path>`` answers a redirect (302) to the file's storage address with the file's
sha256 in ``X-Linked-Etag`` and its size in ``X-Linked-Size``; a gated repository answers 401 without a token and 403
with a token it has not granted. Meta's files are plain (``/meta/<path>``). Both honour ``Range``. Faults on demand:
a corrupted byte, a transfer that stalls half-way, a slow transfer (``rate``); every request is logged.

    python tests/stand_in_hub.py FOLDER   # serves every file under FOLDER/<repo>/<path> and FOLDER/meta/<path>
"""

import hashlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class StandIn:
    def __init__(self):
        self.files = {}  # URL path of the storage address -> bytes
        self.resolve = {}  # /<repo>/resolve/main/<path> -> storage path
        self.gated = {}  # repo -> the one token it accepts
        self.corrupt, self.stall = set(), set()  # storage paths
        self.rate = None  # bytes per second, None: as fast as it goes
        self.log = []  # (method, path, Range header, status, body bytes sent)
        self.stop = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def answer(self, head):
                path = self.path.split("?")[0]
                if path in stand_in.resolve:
                    repo = path.split("/resolve/")[0].lstrip("/")
                    token = stand_in.gated.get(repo)
                    sent = self.headers.get("Authorization", "")
                    if token and not sent:
                        return self.empty(401, {"X-Error-Code": "GatedRepo"})
                    if token and sent != f"Bearer {token}":
                        return self.empty(403, {"X-Error-Code": "GatedRepo"})
                    target = stand_in.resolve[path]
                    data = stand_in.files[target]
                    return self.empty(302, {"Location": target, "X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                                            "X-Linked-Size": str(len(data))})
                if path not in stand_in.files:
                    return self.empty(404)
                data = stand_in.files[path]
                if path in stand_in.corrupt:
                    data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
                start, status = 0, 200
                wanted = self.headers.get("Range", "")
                if wanted.startswith("bytes="):
                    start = int(wanted[6:].split("-")[0])
                    if start >= len(data):
                        return self.empty(416, {"Content-Range": f"bytes */{len(data)}"})
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                sent = 0
                if not head:
                    try:
                        sent = self.send_body(path, body)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                stand_in.log.append(("HEAD" if head else "GET", path, wanted, status, sent))

            def send_body(self, path, body):
                sent, piece = 0, 65536
                while sent < len(body):
                    if path in stand_in.stall and sent >= len(body) // 2:
                        stand_in.stop.wait()  # silence until the stand-in stops
                        return sent
                    self.wfile.write(body[sent:sent + piece])
                    self.wfile.flush()
                    sent += len(body[sent:sent + piece])
                    if stand_in.rate:
                        time.sleep(piece / stand_in.rate)
                return sent

            def empty(self, status, headers=None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                stand_in.log.append((self.command, self.path, self.headers.get("Range", ""), status, 0))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.meta = f"{self.url}/meta"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_hub(self, repo: str, path: str, data: bytes) -> str:
        """Serve ``data`` as ``path`` of the hub repository ``repo``; returns its storage path (for faults)."""
        storage = f"/lfs/{hashlib.sha256(data).hexdigest()}/{path.rsplit('/', 1)[-1]}"
        self.files[storage] = data
        self.resolve[f"/{repo}/resolve/main/{path}"] = storage
        return storage

    def add_meta(self, path: str, data: bytes) -> str:
        self.files[f"/meta/{path}"] = data
        return f"/meta/{path}"

    def bodies(self, storage: str) -> list:
        """(Range header, bytes sent) of each GET of a storage path."""
        return [(r, n) for method, p, r, status, n in self.log if method == "GET" and p == storage and status in (200, 206)]

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":  # serve a folder: FOLDER/<owner>/<repo>/<path> on the hub, FOLDER/meta/<path> at Meta
    root, stand_in = Path(sys.argv[1]), StandIn()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = file.relative_to(root).parts
        if parts[0] == "meta":
            stand_in.add_meta("/".join(parts[1:]), file.read_bytes())
        else:
            stand_in.add_hub("/".join(parts[:2]), "/".join(parts[2:]), file.read_bytes())
    if len(sys.argv) > 2:
        stand_in.rate = float(sys.argv[2])
    print(stand_in.url, flush=True)
    threading.Event().wait()
