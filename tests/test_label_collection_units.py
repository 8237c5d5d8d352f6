"""label_collection's parts without Ray or servers: job keys, the manifest, a job's folder (complete or absent, never
twice), the server slots (at most k in flight per server, a dead server's jobs elsewhere), and that nothing of the
pack's nodes or engine imports ray."""

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.collection.job_outputs import JobFolder, clear_partial, complete_keys, is_complete
from scripts.collection.jobs import job_digest, job_key, read_manifest
from scripts.collection.server_slots import NoServerLeft, ServerSlots, ServerWatch, normalise_url
from scripts.label_collection import parse_args
from scripts.queue_workflow import apply_overrides
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
    assert complete_keys(tmp_path) == {"k": ""} and not any((tmp_path / ".partial").iterdir())
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
        assert [await slots.acquire("a"), await slots.acquire("a")] == ["a", "a"]
        assert [await slots.acquire("a"), await slots.acquire("a")] == ["b", "b"]  # a is busy: b's free slots
        fifth = asyncio.ensure_future(slots.acquire("a"))  # every slot taken: waits
        await asyncio.sleep(0.05)
        assert not fifth.done()
        await slots.release("a")
        assert await asyncio.wait_for(fifth, 1) == "a"
        for url in ("a", "a", "b", "b"):
            await slots.release(url)
        await slots.drop("a", "connection refused")
        assert await slots.acquire("a") == "b" and await slots.acquire("a") == "b"  # a is dead: b's slots
        waiting = asyncio.ensure_future(slots.acquire("a"))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # never a third prompt on b
        await slots.readmit("a")
        assert await asyncio.wait_for(waiting, 1) == "a"  # re-admitted: its slots are given again
        await slots.drop("a", "gone")
        await slots.drop("b", "gone")
        with pytest.raises(NoServerLeft, match="no ComfyUI server is alive"):
            await slots.acquire("a")
        assert await slots.hold() == ""
        assert [what for _, what, _, _ in slots.events] == ["dropped", "re-admitted", "dropped", "dropped"]

    asyncio.run(scenario())


class Blocking:
    """ServerSlots' async methods called as the driver calls them through Ray (plain calls)."""

    def __init__(self, slots):
        self.slots = slots

    def __getattr__(self, name):
        return lambda *a: asyncio.run(getattr(self.slots, name)(*a))


def test_server_watch_readmits_a_server_that_answers_again_and_says_so_once():
    slots = ServerSlots(["http://a", "http://b"], per_server=1)
    answering = set()
    watch = ServerWatch(Blocking(slots), probe=lambda url: url in answering)
    asyncio.run(slots.drop("http://b", "unreachable for 3 s"))
    assert watch.step() == ["server http://b dropped at 0 s: unreachable for 3 s"]
    assert watch.step() == [] and "http://b" in slots.dead  # still down: probed, nothing said again
    answering.add("http://b")
    lines = watch.step()
    assert len(lines) == 1 and lines[0].startswith("server http://b re-admitted at") and not slots.dead
    assert watch.step() == []


def test_server_urls_are_normalised():
    assert normalise_url("http://h:8188/") == normalise_url(" http://h:8188") == "http://h:8188"
    with pytest.raises(ValueError, match="expected a URL"):
        normalise_url("h:8188")
    args = parse_args(["comfy", "m", "--out", "o", "--workflow", "w.json", "--server", "http://h:1/", "--server", "http://h:1"])
    assert args.server == ["http://h:1"]


def test_address_is_accepted_before_and_after_the_subcommand():
    comfy = ["m", "--out", "o", "--workflow", "w.json", "--server", "http://h:1"]
    assert parse_args(["--address", "h:6379", "comfy", *comfy]).address == "h:6379"
    assert parse_args(["comfy", *comfy, "--address", "h:6379"]).address == "h:6379"
    engine = ["engine", "m", "--out", "o", "persam", "--sam", "s", "--reference", "r", "--reference-mask", "k"]
    assert parse_args([*engine, "--address", "auto", "--num-cpus", "4"]).address == "auto"
    assert parse_args(engine).address is None


def test_job_digest_follows_the_bytes_not_the_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "p.png").write_bytes(b"picture A")
    (tmp_path / "b" / "p.png").write_bytes(b"picture B")
    (tmp_path / "b" / "q.png").write_bytes(b"picture A")
    job = {"id": "p.png", "image": str(tmp_path / "a" / "p.png")}
    digest = job_digest(job, "settings")
    assert digest != job_digest({**job, "image": str(tmp_path / "b" / "p.png")}, "settings")  # same name, other bytes
    assert digest == job_digest({**job, "image": str(tmp_path / "b" / "q.png")}, "settings")  # same bytes
    assert digest != job_digest(job, "other settings")


def test_a_changed_job_replaces_its_old_answer_which_is_kept_aside(tmp_path):
    with JobFolder(tmp_path, "k", "id", digest="d1") as folder:
        folder.write_bytes("a.png", b"old")
    assert is_complete(tmp_path, "k", "d1") and not is_complete(tmp_path, "k", "d2")
    with JobFolder(tmp_path, "k", "id", digest="d2") as folder:
        folder.write_bytes("a.png", b"new")
    assert folder.placed and (tmp_path / "k" / "a.png").read_bytes() == b"new" and complete_keys(tmp_path) == {"k": "d2"}
    (aside,) = (tmp_path / ".superseded").iterdir()
    assert (aside / "a.png").read_bytes() == b"old"  # never deleted


def test_folder_manifest_says_which_files_are_not_jobs(tmp_path):
    for name in ("a.png", "b.gif", "c.webp", "d.mp4", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    skipped = []
    assert [r["id"] for r in read_manifest(tmp_path, skipped)] == ["a.png", "b.gif", "c.webp"]
    assert [name for name, _ in skipped] == ["d.mp4", "notes.txt"] and "video/mp4" in skipped[0][1]


def test_targets_name_one_node_by_id_or_title_and_unknown_names_are_errors():
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "ref.png"}, "_meta": {"title": "Load Reference"}},
                "2": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}, "_meta": {"title": "Load.Photo"}}}
    assert apply_overrides(json.loads(json.dumps(workflow)), ["2.image=x.png"], strict=True)["1"]["inputs"]["image"] == "ref.png"
    done = apply_overrides(json.loads(json.dumps(workflow)), ['"Load.Photo".image=x.png'], strict=True)
    assert (done["1"]["inputs"]["image"], done["2"]["inputs"]["image"]) == ("ref.png", "x.png")
    done = apply_overrides(json.loads(json.dumps(workflow)), ["LoadImage.image=x.png"], strict=True)
    assert done["1"]["inputs"]["image"] == done["2"]["inputs"]["image"] == "x.png"  # a class: every node of it
    with pytest.raises(ValueError, match=r"--job-input 'LoadImages.image=image': the workflow has no node 'LoadImages'.*"
                                         r'1 LoadImage "Load Reference", 2 LoadImage "Load.Photo"'):
        apply_overrides(workflow, ["LoadImages.image=image"], strict=True, flag="--job-input")
    info = {"LoadImage": {"input": {"required": {"image": [["a.png"], {}]}}}}
    with pytest.raises(ValueError, match="LoadImage has no input 'imag'; its inputs: image"):
        apply_overrides(workflow, ["1.imag=x.png"], info, strict=True)
    assert apply_overrides(json.loads(json.dumps(workflow)), ["Other.x=1"]) == workflow  # queue_workflow.py: passed over


def test_nodes_and_engine_never_import_ray():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import models, models.diception, models.persam, "
            "models.persam.reference, scripts.collection.engine_labeler, scripts.collection.comfy_labeler; "
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr
    for path in list((ROOT / "nodes").glob("*.py")) + list((ROOT / "models").rglob("*.py")) + [ROOT / "__init__.py"]:
        assert "import ray" not in path.read_text() and "from ray" not in path.read_text(), path


def test_the_documented_install_line_works_in_a_fresh_venv(tmp_path):
    """`pip install ".[ray]"` from the pack's folder (it failed: "Multiple top-level packages discovered in a
    flat-layout"). A fresh venv that sees this environment's packages (a .pth file), so that nothing is downloaded:
    the line must resolve every requirement and Ray Data, and install no package of the pack's folders."""
    import sysconfig

    source = tmp_path / "pack"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("nodes", "models", "scripts", "web", "bench"):  # what setuptools' discovery saw
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "__init__.py").write_text("")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "this_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                           "--no-build-isolation", ".[ray]"], cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Successfully installed comfyui-diception-persam" in done.stdout, done.stdout[-2000:]
    check = subprocess.run([str(python), "-c", "import ray.data, importlib.metadata as m; "
                            "print(sorted(m.distribution('comfyui-diception-persam').read_text('top_level.txt').split()))"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0 and check.stdout.strip() == "[]", check.stderr[-2000:]


def test_the_workers_get_the_code_without_the_miniatures_weights(tmp_path):
    """What Ray uploads for ``py_modules`` (its own packaging, with the labeller's ``excludes``): the code, not the
    20 MB of miniature weights under scripts/ (every cluster received them; no labeller reads them)."""
    import zipfile

    from ray._private.runtime_env.packaging import create_package

    from scripts.collection.pipeline import UPLOAD_EXCLUDES

    sizes = {}
    for folder in ("scripts", "models"):
        target = tmp_path / f"{folder}.zip"
        create_package(str(ROOT / folder), target, include_gitignore=True, include_parent_dir=True, excludes=UPLOAD_EXCLUDES)
        names = zipfile.ZipFile(target).namelist()
        assert f"{folder}/collection/pipeline.py" in names or f"{folder}/persam/cascade.py" in names, names[:20]
        assert not [n for n in names if n.endswith(".safetensors") or "__pycache__" in n], names
        sizes[folder] = target.stat().st_size
    assert sizes["scripts"] < 2 << 20, sizes
