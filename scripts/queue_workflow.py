"""Queue an API-format workflow on a running ComfyUI, wait for it, and download its outputs.

    python scripts/queue_workflow.py workflows/api/diception_depth.json --port 8188 --image photo.png --out results/
    python scripts/queue_workflow.py WORKFLOW.json --set DiceptionLoad.dtype=fp16 --set LoadImage.image=photo.png

``--image`` files are uploaded to the server's input folder first (LoadImage nodes name them); ``--set
NODE.INPUT=VALUE`` changes that input of one node (NODE: its id, or its title) or of every node of a class: VALUE is read as JSON, else as text, and a
STRING input (``--set 'DiceptionPerceiveTask.points=[{"x":5,"y":5}]'``) gets the text as given (types from the
server's /object_info). Every output file the prompt lists (images, Save Depth's .npy, ...) is downloaded.
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

    def queue(self, prompt, prompt_id=None, extra_data=None) -> str:
        """Queue a prompt; returns the id the server gave it. ``prompt_id`` asks for that id (ComfyUI v0.8.0 keeps
        a client's id; older builds such as the 2024-03 one ignore it and make their own)."""
        payload = {"prompt": prompt, "client_id": self.client_id}
        if prompt_id is not None:
            payload["prompt_id"] = prompt_id
        if extra_data:
            payload["extra_data"] = extra_data
        body = json.dumps(payload).encode()
        try:
            answer = json.loads(self._request("/prompt", body, {"Content-Type": "application/json"}))
        except urllib.error.HTTPError as e:
            payload = json.loads(e.read() or b"{}")
            raise ComfyError(f"/prompt refused ({e.code}): {json.dumps(payload)[:2000]}", payload) from None
        return answer["prompt_id"]

    def finished(self, prompt_id):
        """The /history entry of a prompt that has finished (success or error), else None."""
        entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
        if entry and (entry.get("status") or {}).get("status_str") in ("success", "error"):
            return entry
        return None

    def queued_ids(self) -> set:
        """The ids of the prompts running or waiting on the server (/queue)."""
        queue = self.get_json("/queue")
        return {item[1] for key in ("queue_running", "queue_pending") for item in queue.get(key, [])}

    def wait(self, prompt_id, timeout=600, poll=0.2) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            entry = self.finished(prompt_id)
            if entry is not None:
                return entry
            time.sleep(poll)
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

    def upload_image(self, path, name=None, overwrite=True) -> str:
        """Upload a file into the server's input folder; returns the name it got (without ``overwrite`` a taken
        name gets a numbered one)."""
        boundary = uuid.uuid4().hex
        name = name or Path(path).name
        data = Path(path).read_bytes()
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + data + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\n{"true" if overwrite else "false"}\r\n--{boundary}--\r\n'.encode()
        answer = json.loads(self._request("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return answer["name"]


def error_message(entry: dict) -> str:
    """The exception message of a failed prompt, from its /history entry."""
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return f"{data.get('exception_type')}: {data.get('exception_message')}"
    return ""


def output_files(entry: dict) -> list:
    """Every file a finished prompt lists in its outputs, whatever the key (``images``, ``gifs``, ``audio``,
    Save Depth's ``depth_arrays`` ...): the entries that name a ``filename``."""
    return [item for output in entry["outputs"].values() for items in output.values() if isinstance(items, list)
            for item in items if isinstance(item, dict) and "filename" in item]


def save_outputs(client, entry, out_dir) -> list:
    """Download every output file of a finished prompt into ``out_dir`` (never overwriting a file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for item in output_files(entry):
        name = Path(item["filename"]).name
        target = out_dir / name
        n = 1
        while target.exists():
            target = out_dir / f"{Path(name).stem}_{n}{Path(name).suffix}"
            n += 1
        target.write_bytes(client.view({"subfolder": "", "type": "output", **item}))
        written.append(target)
    return written


def input_type(object_info: dict, class_type: str, name: str):
    """The declared type of an input (``"STRING"``, ``"INT"``, a list of choices, ``"IMAGE"``...), or None."""
    inputs = object_info.get(class_type, {}).get("input", {})
    for group in ("required", "optional"):
        if name in inputs.get(group, {}):
            return inputs[group][name][0]
    return None


def is_link(value, workflow: dict, object_info=None) -> bool:
    """``[node_id, output_index]`` naming a node of the workflow and (with its /object_info) one of its outputs."""
    if not (isinstance(value, list) and len(value) == 2 and str(value[0]) in workflow and type(value[1]) is int):
        return False
    outputs = (object_info or {}).get(workflow[str(value[0])].get("class_type"), {}).get("output")
    return 0 <= value[1] < (len(outputs) if outputs is not None else value[1] + 1)


def override_value(raw: str, kind, item: str, workflow: dict, object_info=None):
    """The value ``--set`` sends for ``raw`` given the input's declared type.

    ComfyUI reads a JSON list in an input as a link ``[node_id, output_index]``: a STRING input gets the text as
    given (``points=[{"x":5,"y":5}]`` is the string the widget holds), a choice gets the text unless it is a JSON
    string; any other input keeps the JSON value, and a list there must be a link to a node of the workflow."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if kind is None:  # type unknown (no /object_info): as given
        return value
    if kind == "STRING" or (isinstance(kind, list) and not isinstance(value, str)):
        return value if isinstance(value, str) else raw
    if isinstance(value, list):
        if not is_link(value, workflow, object_info):
            raise ValueError(f"--set {item!r}: this input takes {kind}, and ComfyUI reads a JSON list as a link "
                             f"[node_id, output_index] to another node's output; give a {kind} value or a link to an "
                             f"output of a node of this workflow (ids: {', '.join(sorted(workflow, key=str))})")
        return [str(value[0]), value[1]]
    return value


def split_target(item: str, flag: str, what: str = "VALUE"):
    """``NODE.INPUT=VALUE`` → (node, input, value). NODE is matched by ``find_nodes``; quotes around it are dropped
    (``"Load Photo".image=a.png``)."""
    target, sep, value = item.partition("=")
    node, dot, name = target.rpartition(".")
    if len(node) >= 2 and node[0] == node[-1] and node[0] in "\"'":
        node = node[1:-1]
    if not sep or not dot or not node or not name:
        raise ValueError(f"{flag} {item!r}: expected NODE.INPUT={what}, NODE being a node id (12), a node title "
                         f"(\"Load Photo\") or a class (LoadImage: every node of that class)")
    return node, name, value


def describe_nodes(workflow: dict) -> str:
    """``1 LoadImage "Load Reference", 2 LoadImage, ...``: every node's id, class and title."""
    parts = []
    for node_id, node in workflow.items():
        title = (node.get("_meta") or {}).get("title")
        parts.append(f"{node_id} {node.get('class_type')}" + (f' "{title}"' if title and title != node.get("class_type") else ""))
    return ", ".join(parts)


def find_nodes(workflow: dict, node: str, flag: str, item: str, strict: bool = True) -> list:
    """The ids of the nodes ``node`` names: a node id, else the nodes with that title (``_meta.title``), else every
    node of that class. ``strict``: a ValueError naming ``node`` and listing the workflow's nodes when none match."""
    if node in workflow:
        return [node]
    for matches in ([i for i, n in workflow.items() if (n.get("_meta") or {}).get("title") == node],
                    [i for i, n in workflow.items() if n.get("class_type") == node]):
        if matches:
            return matches
    if strict:
        raise ValueError(f"{flag} {item!r}: the workflow has no node {node!r} (no node id, title or class of that name); "
                         f"its nodes (id class \"title\"): {describe_nodes(workflow)}")
    return []


def apply_overrides(workflow: dict, overrides, object_info=None, strict: bool = False, flag: str = "--set") -> dict:
    """Apply ``NODE.INPUT=VALUE`` overrides (NODE: a node id, a title or a class, see ``find_nodes``). ``object_info``
    maps a class to its ``/object_info`` entry (the input types; an input it does not declare is an error); without
    it values are read as JSON, else as text. ``strict``: a NODE that matches nothing is an error (the labeller);
    else it is passed over (one override list serves several workflows, as in ``queue_workflow.py``)."""
    for item in overrides:
        node, name, raw = split_target(item, flag)
        ids = find_nodes(workflow, node, flag, item, strict)
        for class_type in dict.fromkeys(workflow[i].get("class_type") for i in ids):
            kind = None
            if object_info is not None:
                kind = input_type(object_info, class_type, name)
                if kind is None:
                    known = [n for group in ("required", "optional") for n in object_info.get(class_type, {}).get("input", {}).get(group, {})]
                    raise ValueError(f"{flag} {item!r}: {class_type} has no input {name!r}; its inputs: {', '.join(known)}")
            value = override_value(raw, kind, item, workflow, object_info)
            for i in ids:
                if workflow[i].get("class_type") == class_type:
                    workflow[i]["inputs"][name] = value
    return workflow


def prepare_prompt(client, workflow: dict, overrides, object_info=None, strict: bool = False) -> dict:
    """``workflow`` with ``overrides`` applied, typed by the server's /object_info of the workflow's classes
    (fetched once per client and cached in ``object_info`` when given)."""
    cache = object_info if object_info is not None else {}
    for class_type in {node["class_type"] for node in workflow.values()} - set(cache):
        cache[class_type] = client.get_json(f"/object_info/{urllib.parse.quote(class_type)}").get(class_type, {})
    return apply_overrides(json.loads(json.dumps(workflow)), overrides, cache, strict)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", help="API-format workflow JSON")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--image", action="append", default=[], help="image to upload to the input folder")
    parser.add_argument("--out", default="comfy_outputs", help="folder for the downloaded outputs")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="override an input of one node (NODE: its id or title) or of every node of a class")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    client = ComfyClient(f"http://{args.host}:{args.port}")
    try:
        for path in args.image:
            client.upload_image(path)
        workflow = prepare_prompt(client, json.loads(Path(args.workflow).read_text(encoding="utf-8")), args.set)
        entry = client.run(workflow, timeout=args.timeout)
    except (ComfyError, TimeoutError, urllib.error.URLError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in save_outputs(client, entry, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
