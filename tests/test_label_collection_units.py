"""label_collection's parts without Ray or servers: job keys, the manifest, a job's folder (complete or absent, never
twice), the server slots (at most k in flight per server, a dead server's jobs elsewhere), and that nothing of the
pack's nodes or engine imports ray."""

import asyncio
import json
import subprocess
import sys

import pytest

from scripts.collection.job_outputs import JobFolder, clear_partial, complete_keys, is_complete
from scripts.collection.jobs import job_key, read_manifest
from scripts.collection.server_slots import NoServerLeft, ServerSlots
from scripts.local_comfyui import ROOT


def test_job_keys_are_the_id_when_plain_and_never_shared():
    assert job_key("a.png") == "a.png"
    keys = {job_key(i) for i in ("cam1/a.png", "cam1_a.png", "cam1:a.png", "../a.png", "video.mp4#12", "é.png", "x" * 300)}
    assert len(keys) == 7 and "cam1_a.png" in keys
    assert all(len(k) <= 120 and "/" not in k and not k.startswith(".") for k in keys)


def test_manifest_forms_and_errors(tmp_path):
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.JPG", "notes.txt"):
        (tmp_path / "photos" / name).write_bytes(b"x")
    assert [r["id"] for r in read_manifest(tmp_path / "photos")] == ["a.png", "sub/b.JPG"]
    (tmp_path / "jobs.csv").write_text("id,image\n1,a.png\n2,b.png\n")
    assert read_manifest(tmp_path / "jobs.csv")[1] == {"id": "2", "image": "b.png"}
    (tmp_path / "dup.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n{"id": "a"}\n')
    with pytest.raises(ValueError, match=r"rows 1 and 3 have the same id 'a'"):
        read_manifest(tmp_path / "dup.jsonl")
    (tmp_path / "noid.jsonl").write_text('{"image": "a.png"}\n')
    with pytest.raises(ValueError, match="row 1 has no 'id'"):
        read_manifest(tmp_path / "noid.jsonl")


def test_a_job_folder_is_complete_or_absent_and_never_twice(tmp_path):
    with pytest.raises(RuntimeError):
        with JobFolder(tmp_path, "k", "id") as folder:
            folder.write_bytes("a.png", b"half")
            raise RuntimeError("killed half-way")
    assert not (tmp_path / "k").exists() and not is_complete(tmp_path, "k")
    with JobFolder(tmp_path, "k", "id", server="s1") as first:
        first.write_bytes("a.png", b"first")
    with JobFolder(tmp_path, "k", "id", server="s2") as second:
        second.write_bytes("a.png", b"second")
    assert first.placed and not second.placed
    assert (tmp_path / "k" / "a.png").read_bytes() == b"first"
    assert json.loads((tmp_path / "k" / "job.json").read_text()) == {"id": "id", "server": "s1", "files": ["a.png"]}
    assert complete_keys(tmp_path) == {"k"} and not any((tmp_path / ".partial").iterdir())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's")
    with pytest.raises(OSError):
        with JobFolder(tmp_path, "mine", "mine") as folder:
            folder.write_bytes("a.png", b"x")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's"  # never overwritten
    with pytest.raises(ValueError, match="plain file name"):
        with JobFolder(tmp_path, "j", "j") as folder:
            folder.write_bytes("../x.png", b"x")
    clear_partial(tmp_path)
    assert not (tmp_path / ".partial").exists()


def test_server_slots_bound_in_flight_and_move_jobs_off_a_dead_server():
    async def scenario():
        slots = ServerSlots(["a", "b"], per_server=2)
        assert [await slots.hold(), await slots.hold(), await slots.hold()] == ["a", "b", "a"]
        got = [await slots.acquire("a"), await slots.acquire("a")]
        assert got == ["a", "a"]
        third = asyncio.ensure_future(slots.acquire("a"))  # a's two slots are taken: waits
        await asyncio.sleep(0.05)
        assert not third.done()
        await slots.release("a")
        assert await asyncio.wait_for(third, 1) == "a"
        await slots.drop("a", "connection refused")
        assert await slots.acquire("a") == "b" and await slots.acquire("a") == "b"  # a is dead: b's slots
        waiting = asyncio.ensure_future(slots.acquire("a"))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # never a third prompt on b
        await slots.drop("b", "gone")
        with pytest.raises(NoServerLeft, match="no ComfyUI server is alive"):
            await asyncio.wait_for(waiting, 1)
        assert await slots.hold() == ""

    asyncio.run(scenario())


def test_nodes_and_engine_never_import_ray():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import models, models.diception, models.persam, "
            "models.persam.reference, scripts.collection.engine_labeler, scripts.collection.comfy_labeler; "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr
    for path in list((ROOT / "nodes").glob("*.py")) + list((ROOT / "models").rglob("*.py")) + [ROOT / "__init__.py"]:
        assert "import ray" not in path.read_text() and "from ray" not in path.read_text(), path
