"""Weights fetched on first use (models/weights_download.py), against a local stand-in for the Hugging Face hub and
Meta's file host (tests/stand_in_hub.py): never the internet. Every test also asserts that nothing incomplete sits
under a final name: the file is either absent or whole and checked."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models import weights_download as wd
from models.known_files import SAM_ENDPOINT_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
DATA = bytes(range(256)) * 12288  # 3 MiB: several 1 MiB chunks
REPO, GATED = "Canyu/DICEPTION", "stabilityai/stable-diffusion-3-medium"



@pytest.fixture
def hub(monkeypatch):
    from stand_in_hub import StandIn

    stand_in = StandIn()
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    monkeypatch.setenv(SAM_ENDPOINT_VARIABLE, stand_in.meta)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)  # not this machine's stored token
    yield stand_in
    stand_in.close()


def hub_file(name="DICEPTION_v1.pth", repo=REPO, **pins):
    return wd.KnownFile(name, "diception", name, repo=repo, **pins)


def only_whole(folder: Path, name: str, data: bytes = DATA) -> bool:
    """The final name holds the whole, correct file, or nothing."""
    final = folder / name
    return not final.exists() or final.read_bytes() == data


def test_first_use_downloads_from_the_hub_with_progress_and_checks_the_hubs_sha256(hub, tmp_path):
    hub.add_hub(REPO, "DICEPTION_v1.pth", DATA)
    seen = []
    path = wd.download(hub_file(), tmp_path / "diception", progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == DATA and path == tmp_path / "diception" / "DICEPTION_v1.pth"
    assert seen[0] == (0, len(DATA)) and seen[-1] == (len(DATA), len(DATA)) and len(seen) >= 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["DICEPTION_v1.pth"]  # no partial, no lock left
    assert wd.download(hub_file(), tmp_path / "diception") == path and len(hub.log) == 2  # present: no request


def test_metas_plain_https_file_is_checked_against_its_pinned_size_and_sha256(hub, tmp_path):
    hub.add_meta("segment_anything/sam_vit_b_tiny.pth", DATA)
    known = wd.KnownFile("sam_vit_b_tiny.pth", "sams", "segment_anything/sam_vit_b_tiny.pth", size=len(DATA),
                         sha256=hashlib.sha256(DATA).hexdigest())
    assert wd.download(known, tmp_path).read_bytes() == DATA
    wrong = wd.KnownFile("other.pth", "sams", "segment_anything/sam_vit_b_tiny.pth", size=len(DATA), sha256="0" * 64)
    with pytest.raises(wd.DownloadError, match="corrupt: its sha256 is"):
        wd.download(wrong, tmp_path)
    assert not (tmp_path / "other.pth").exists() and not wd.partial_path(tmp_path, "other.pth").exists()


def test_a_corrupted_byte_is_a_checksum_error_and_leaves_nothing(hub, tmp_path):
    hub.corrupt.add(hub.add_hub(REPO, "DICEPTION_v1.pth", DATA))
    with pytest.raises(wd.DownloadError) as failure:
        wd.download(hub_file(), tmp_path)
    message = str(failure.value)
    assert "DICEPTION_v1.pth" in message and "corrupt" in message and hashlib.sha256(DATA).hexdigest() in message
    assert str(tmp_path) in message and f"{hub.url}/{REPO}/resolve/main/DICEPTION_v1.pth" in message
    assert list(tmp_path.iterdir()) == []  # neither the final name nor the partial copy


@pytest.mark.parametrize("token", [None, "hf_not_granted"])
def test_a_gated_repository_names_the_licence_page_the_token_and_the_offline_way(hub, tmp_path, monkeypatch, token):
    hub.add_hub(GATED, "sd3_medium.safetensors", DATA)
    hub.gated[GATED] = "hf_granted"
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    known = wd.KnownFile("sd3_medium.safetensors", "checkpoints", "sd3_medium.safetensors", repo=GATED, gated=True)
    with pytest.raises(wd.GatedRepoError) as failure:
        wd.download(known, tmp_path)
    message = str(failure.value)
    assert f"HTTP {401 if token is None else 403}" in message
    for needed in ("https://huggingface.co/stabilityai/stable-diffusion-3-medium", "accept", "HF_TOKEN",
                   "huggingface-cli login", "Offline", str(tmp_path), wd.DOCS):
        assert needed in message, needed
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("HF_TOKEN", "hf_granted")  # the token goes to the hub, and the download runs
    assert wd.download(known, tmp_path).read_bytes() == DATA


def test_a_missing_file_is_a_404_naming_the_url_and_the_folder(hub, tmp_path):
    with pytest.raises(wd.DownloadError, match="HTTP 404") as failure:
        wd.download(hub_file(), tmp_path / "diception")
    assert f"{hub.url}/{REPO}/resolve/main/DICEPTION_v1.pth" in str(failure.value) and str(tmp_path) in str(failure.value)
    assert only_whole(tmp_path / "diception", "DICEPTION_v1.pth") and not (tmp_path / "diception" / "DICEPTION_v1.pth").exists()


def test_no_network_and_a_stalled_server_fail_within_seconds_naming_file_url_and_folder(hub, tmp_path, monkeypatch):
    storage = hub.add_hub(REPO, "DICEPTION_v1.pth", DATA)
    hub.stall.add(storage)
    started = time.monotonic()
    with pytest.raises(wd.DownloadError, match="timed out") as failure:
        wd.download(hub_file(), tmp_path, timeout=1.0)
    assert time.monotonic() - started < 20  # 1 s of silence; room for a loaded machine
    assert "DICEPTION_v1.pth" in str(failure.value) and str(tmp_path) in str(failure.value)
    kept = wd.partial_path(tmp_path, "DICEPTION_v1.pth")
    assert 0 < kept.stat().st_size < len(DATA) and not (tmp_path / "DICEPTION_v1.pth").exists()  # kept to resume
    hub.stall.clear()
    size = kept.stat().st_size
    assert wd.download(hub_file(), tmp_path).read_bytes() == DATA
    assert hub.bodies(storage)[-1] == (f"bytes={size}-", len(DATA) - size)  # resumed from what was kept

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", closed)
    started = time.monotonic()
    with pytest.raises(wd.DownloadError) as failure:
        wd.download(hub_file("clip_l.safetensors"), tmp_path, timeout=1.0)
    assert time.monotonic() - started < 20
    message = str(failure.value)
    assert f"{closed}/{REPO}/resolve/main/clip_l.safetensors" in message and "clip_l.safetensors" in message
    assert str(tmp_path) in message and "network" in message and not (tmp_path / "clip_l.safetensors").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline by choice: no attempt at all, the same advice
    with pytest.raises(wd.DownloadError, match="HF_HUB_OFFLINE is set") as failure:
        wd.download(hub_file("clip_l.safetensors"), tmp_path)
    assert "huggingface.co/Canyu/DICEPTION/resolve/main/clip_l.safetensors" in str(failure.value)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHILD = """
import sys
sys.path.insert(0, {root!r})
from models import weights_download as wd
wd.download(wd.KnownFile("DICEPTION_v1.pth", "diception", "DICEPTION_v1.pth", repo={repo!r}), {folder!r})
print("done", flush=True)
"""


def child(hub, folder):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "", "HF_HOME": str(Path(folder).parent / "hf_home")}
    code = CHILD.format(root=str(ROOT), repo=REPO, folder=str(folder))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_download_killed_mid_way_resumes_where_it_stopped(hub, tmp_path):
    storage = hub.add_hub(REPO, "DICEPTION_v1.pth", DATA)
    hub.rate = 2 << 20  # 2 MiB/s: the 3 MiB file takes 1.5 s
    process = child(hub, tmp_path)
    partial = wd.partial_path(tmp_path, "DICEPTION_v1.pth")
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size >= 1 << 20):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # a killed server: no clean-up runs
    process.wait()
    kept = partial.stat().st_size
    assert 0 < kept < len(DATA) and not (tmp_path / "DICEPTION_v1.pth").exists()
    assert (tmp_path / ".DICEPTION_v1.pth.lock").exists()  # the killed process's lock file stays: it must not block
    hub.rate = None
    assert wd.download(hub_file(), tmp_path).read_bytes() == DATA
    # only the rest was fetched (the killed transfer's log entry may land after it: the stand-in logs when sending ends)
    bodies = hub.bodies(storage)
    assert [b for b in bodies if b[0]] == [(f"bytes={kept}-", len(DATA) - kept)]
    assert not any(sent == len(DATA) for _, sent in bodies)  # never the whole file again
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf_home") == ["DICEPTION_v1.pth"]


def test_an_interrupt_in_the_progress_callback_stops_the_download_and_keeps_it_for_resuming(hub, tmp_path):
    storage = hub.add_hub(REPO, "DICEPTION_v1.pth", DATA)

    class Interrupted(Exception):
        pass

    def interrupt(done, total):
        if done >= 1 << 20:
            raise Interrupted  # what ComfyUI's interrupt check raises from the node's progress bar

    with pytest.raises(Interrupted):
        wd.download(hub_file(), tmp_path, progress=interrupt)
    kept = wd.partial_path(tmp_path, "DICEPTION_v1.pth").stat().st_size
    assert kept == 1 << 20 and not (tmp_path / "DICEPTION_v1.pth").exists()
    assert wd.download(hub_file(), tmp_path).read_bytes() == DATA
    assert hub.bodies(storage)[-1] == (f"bytes={kept}-", len(DATA) - kept)


def test_two_processes_asking_for_one_file_download_it_once(hub, tmp_path):
    storage = hub.add_hub(REPO, "DICEPTION_v1.pth", DATA)
    hub.rate = 3 << 19  # 1.5 MiB/s: 2 s, so the two processes overlap
    processes = [child(hub, tmp_path), child(hub, tmp_path)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert (tmp_path / "DICEPTION_v1.pth").read_bytes() == DATA
    assert hub.bodies(storage) == [("", len(DATA))]  # one transfer, whole; the other process waited and found the file
    assert [p.name for p in tmp_path.iterdir() if p.name != "hf_home"] == ["DICEPTION_v1.pth"]  # no partial, no lock


def test_the_registry_names_real_files_with_verified_pins():
    sam = wd.KNOWN_FILES["sam_vit_h_4b8939.pth"]
    assert sam.public_url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"
    assert sam.size == 2564550879 and sam.sha256.startswith("a7bf3b02")  # the name's 4b8939 is the MD5's start
    dice = wd.KNOWN_FILES["DICEPTION_v1.pth"]
    assert dice.public_url == "https://huggingface.co/Canyu/DICEPTION/resolve/main/DICEPTION_v1.pth" and not dice.gated
    assert wd.KNOWN_FILES["clip_g.safetensors"].public_url.endswith("stable-diffusion-3-medium/resolve/main/text_encoders/clip_g.safetensors")
    assert all(k.gated == (k.repo == GATED) for k in wd.KNOWN_FILES.values())
    assert all(len(k.sha256) == 64 for k in wd.KNOWN_FILES.values() if k.sha256)


def test_docs_list_every_known_file_with_its_folder_and_link():
    table = (ROOT / wd.DOCS).read_text()
    for known in wd.KNOWN_FILES.values():
        assert f"| `{known.name}` | `models/{known.folder}` | [" in table and f"]({known.public_url})" in table, known.name
        assert (f"| {known.size:,} |" if known.size else "| from the hub |") in table.split(f"`{known.name}`")[1].split("\n")[0]
