"""The loaders' ``download`` contract through a real ComfyUI (each build), against the local stand-in hub: the known
files are listed while absent; with download off an absent one is an error naming its URL and folder; with it on
Load DICEPTION fetches DICEPTION_v1.pth (the tiny checkpoint served under that name) into the diception folder with
ComfyUI's progress bar, and loads it. The download rules themselves are tested in test_weights_download.py."""

import threading

import pytest
from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from graphs import diception_graph
from stand_in_hub import StandIn
from server_messages import listen

from scripts.local_comfyui import LocalComfyUI, comfyui_builds

BUILDS = comfyui_builds()
TINY = (FIXTURES / "diception/model/diception_tiny.pth").read_bytes()


@pytest.mark.parametrize("build", BUILDS, ids=[b.label for b in BUILDS])
def test_load_diception_downloads_an_absent_checkpoint_with_progress_then_loads_it(build, tmp_path, monkeypatch):
    hub = StandIn()
    hub.add_hub("Canyu/DICEPTION", "DICEPTION_v1.pth", TINY)
    hub.rate = 8 << 20  # about 1 s: several progress updates
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the server inherits it
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    engine = LocalComfyUI(tmp_path / "server", build)
    comfy = engine.client
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
        folder = comfy.dirs["models"] / "diception"
        image = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
        graph = diception_graph(image)
        graph["model"]["inputs"].update(checkpoint="DICEPTION_v1.pth", download=False)
        with pytest.raises(ComfyError) as refused:
            comfy.run(graph, timeout=300)
        message = error_message(refused.value.body)
        assert "download is off" in message and "https://huggingface.co/Canyu/DICEPTION/resolve/main/DICEPTION_v1.pth" in message
        assert not (folder / "DICEPTION_v1.pth").exists() and hub.bodies(next(iter(hub.files))) == []

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
        engine.stop()
        hub.close()
