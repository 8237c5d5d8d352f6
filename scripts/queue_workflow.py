"""Queue an API-format workflow on a running ComfyUI, wait for it, and download its outputs.

    python scripts/queue_workflow.py workflows/api/diception_depth.json --port 8188 --image photo.png --out results/
    python scripts/queue_workflow.py WORKFLOW.json --set DiceptionLoad.dtype=fp16 --set LoadImage.image=photo.png

``--image`` files are uploaded to the server's input folder first (LoadImage nodes name them); ``--set
CLASS.INPUT=VALUE`` changes that input of every node of that class (VALUE is read as JSON, else as text).
The exit status is non-zero, with the server's error text, when the prompt is refused or fails.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path


class ComfyError(Exception):
    """A prompt was refused (HTTP 400) or failed while executing."""

    def __init__(self, message, body=None):
        super().__init__(message)
        self.body = body


class ComfyClient:
    def __init__(self, url, dirs=None):
        self.url = url
        self.dirs = dirs or {}
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


def save_outputs(client, entry, out_dir) -> list:
    """Download every image a finished prompt produced into ``out_dir`` (never overwriting a file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for node_id, output in entry["outputs"].items():
        for image in output.get("images", []):
            target = out_dir / image["filename"]
            n = 1
            while target.exists():
                target = out_dir / f"{Path(image['filename']).stem}_{n}{Path(image['filename']).suffix}"
                n += 1
            target.write_bytes(client.view(image))
            written.append(target)
    return written


def apply_overrides(workflow: dict, overrides) -> dict:
    for item in overrides:
        target, _, raw = item.partition("=")
        class_type, _, name = target.partition(".")
        if not name or not _:
            raise ValueError(f"--set {item!r}: expected CLASS.INPUT=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        for node in workflow.values():
            if node.get("class_type") == class_type:
                node["inputs"][name] = value
    return workflow


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", help="API-format workflow JSON")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--image", action="append", default=[], help="image to upload to the input folder")
    parser.add_argument("--out", default="comfy_outputs", help="folder for the downloaded outputs")
    parser.add_argument("--set", action="append", default=[], metavar="CLASS.INPUT=VALUE", help="override an input")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    client = ComfyClient(f"http://{args.host}:{args.port}")
    try:
        for path in args.image:
            client.upload_image(path)
        workflow = apply_overrides(json.loads(Path(args.workflow).read_text()), args.set)
        entry = client.run(workflow, timeout=args.timeout)
    except (ComfyError, TimeoutError, urllib.error.URLError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in save_outputs(client, entry, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
