"""The prompt cache through real servers: a run with an empty cache builds the text encoders once; a second server
started on the same model folders (a restart) answers the same prompt without building them, with the same result."""

import io
import shutil

import numpy as np
import pytest
from comfy_server import FIXTURES
from graphs import diception_graph
from PIL import Image

from scripts.local_comfyui import LocalComfyUI

BUILT = "building the text encoders"


def answer(client, prefix):
    (client.dirs["input"] / "square.png").write_bytes((FIXTURES / "diception/images/square_64x64.png").read_bytes())
    entry = client.run(diception_graph("square.png", task="semantic segmentation", category="cat", prefix=prefix, steps=2, guidance=2.0))
    return np.asarray(Image.open(io.BytesIO(client.view(entry["outputs"]["save"]["images"][0]))))


@pytest.mark.newest_build("the cache is the engine's files (models/diception/prompts.py), keyed by bytes, under the first "
                          "diception model folder, which every build's DICEPTION tests already load from")
def test_the_prompt_cache_survives_a_restart(tmp_path, comfy):
    models = comfy.dirs["models"]
    shutil.rmtree(models / "diception" / "prompt_cache", ignore_errors=True)
    built_before = comfy.log_path.read_text().count(BUILT)
    first = answer(comfy, "cold")
    assert comfy.log_path.read_text().count(BUILT) == built_before + 1, comfy.log_path.read_text()[-2000:]
    assert list((models / "diception" / "prompt_cache").rglob("*.safetensors"))
    (tmp_path / "restarted").mkdir()
    (tmp_path / "restarted" / "models").symlink_to(models, target_is_directory=True)  # the same model folders
    restarted = LocalComfyUI(tmp_path / "restarted", comfy.build)
    try:
        second = answer(restarted.client, "warm")
    finally:
        restarted.stop()
    assert BUILT not in restarted.log_path.read_text()
    assert np.array_equal(first, second)
