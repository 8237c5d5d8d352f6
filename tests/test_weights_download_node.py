"""The loaders' ``download`` contract through a real ComfyUI (each build), against the local stand-in hub: the known
files are listed while absent; with download off an absent one is an error naming its URL and folder; with it on
Load DICEPTION fetches DICEPTION_v1.pth (the tiny checkpoint served under that name) into the diception folder with
ComfyUI's progress bar, and loads it. The download rules themselves are tested in test_weights_download.py."""

import threading

import pytest

from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from graphs import diception_graph
from server_messages import listen

TINY = (FIXTURES / "diception/model/diception_tiny.pth").read_bytes()


def test_load_diception_downloads_an_absent_checkpoint_with_progress_then_loads_it(comfy, weights_hub):
    """On the session server, which downloads from ``weights_hub`` (tests/comfy_server.py); the checkpoint is removed
    again afterwards, so every other test sees it absent."""
    folder = comfy.dirs["models"] / "diception"
    storage = next(iter(weights_hub.files))
    served = len(weights_hub.bodies(storage))  # the hub serves every build's server
    try:
        info = comfy.object_info()
        listed = info["DiceptionLoad"]["input"]["required"]["checkpoint"][0]
        # listed while absent, marked; the plain name stays out of the list, so the Missing Models panel reports it
        assert "DICEPTION_v1.pth (download)" in listed and "DICEPTION_v1.pth" not in listed
        assert "sam_vit_h_4b8939.pth (download)" in info["PersamSamLoader"]["input"]["required"]["checkpoint"][0]
        assert info["DiceptionLoad"]["input"]["optional"]["download"][0] == "BOOLEAN"
        graph = diception_graph("rect.png")
        graph["model"]["inputs"]["checkpoint"] = "nowhere.pth"  # neither on disk nor known: refused before running
        with pytest.raises(ComfyError, match="nowhere.pth"):
            comfy.run(graph, timeout=300)
        image = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
        graph = diception_graph(image)
        graph["model"]["inputs"].update(checkpoint="DICEPTION_v1.pth", download=False)
        with pytest.raises(ComfyError) as refused:
            comfy.run(graph, timeout=300)
        message = error_message(refused.value.body)
        assert "download is off" in message and "https://huggingface.co/Canyu/DICEPTION/resolve/main/DICEPTION_v1.pth" in message
        assert not (folder / "DICEPTION_v1.pth").exists() and len(weights_hub.bodies(storage)) == served

        graph["model"]["inputs"]["download"] = True
        messages, stop = [], threading.Event()
        thread = threading.Thread(target=listen, args=(comfy, messages, stop), daemon=True)
        thread.start()
        try:
            comfy.run(graph, timeout=300)
        finally:
            stop.set()
            thread.join(5)
        assert (folder / "DICEPTION_v1.pth").read_bytes() == TINY  # the first folder ComfyUI lists, not ComfyUI's own
        assert "DICEPTION_v1.pth" in comfy.object_info()["DiceptionLoad"]["input"]["required"]["checkpoint"][0]
        assert [p.name for p in folder.iterdir() if p.name.startswith(".DICEPTION")] == []  # no partial, no lock
        bar = [m["data"] for _, m in messages if m["type"] == "progress" and m["data"].get("node") in ("model", None)]
        assert len(bar) >= 2 and bar[-1]["value"] == bar[-1]["max"] == len(TINY), bar[-3:]
    finally:
        (folder / "DICEPTION_v1.pth").unlink(missing_ok=True)
