"""The prompt cache through real servers: the first run builds the text encoders once, a restarted server
(same model folders) answers the same prompt without building them, with the same result."""

import io

import numpy as np
from comfy_server import FIXTURES
from graphs import diception_graph
from PIL import Image

from scripts.local_comfyui import LocalComfyUI

BUILT = "building the text encoders"


def run_once(workdir, prefix, build):
    engine = LocalComfyUI(workdir, build)
    try:
        (engine.dirs["input"] / "square.png").write_bytes((FIXTURES / "diception/images/square_64x64.png").read_bytes())
        entry = engine.client.run(diception_graph("square.png", task="semantic segmentation", category="cat", prefix=prefix, steps=2, guidance=2.0))
        image = np.asarray(Image.open(io.BytesIO(engine.client.view(entry["outputs"]["save"]["images"][0]))))
    finally:
        engine.stop()
    return image, engine.log_path.read_text()


def test_the_prompt_cache_survives_a_restart(tmp_path, comfy_build):
    first, log_first = run_once(tmp_path, "cold", comfy_build)
    second, log_second = run_once(tmp_path, "warm", comfy_build)
    assert log_first.count(BUILT) == 1, log_first[-2000:]
    assert BUILT not in log_second
    assert list((tmp_path / "models" / "diception" / "prompt_cache").rglob("*.safetensors"))
    assert np.array_equal(first, second)
