"""Load DICEPTION + Perceive Task in the real ComfyUI server with an EMPTY prompt cache, from each place SD3's
text encoders can come from: the plain single file + separate encoder files in models/text_encoders and
models/clip (fp16, fp8 e4m3fn and scaled-fp8 T5-XXL), an incl_clips single file, the diffusers folder.
(The tiny files are built from the tiny SD3 folder's weights; the server builds single files with that
folder's configs, see scripts/local_comfyui.py.)"""

import shutil

import pytest
from comfy_server import FIXTURES, ComfyError, error_message, save_fixture_image
from graphs import diception_graph
from tiny_models import build_comfy_text_encoders, build_sd3_single_file

FOLDER = FIXTURES / "diception" / "model" / "tiny_sd3"
BUILT = "building the text encoders"
PLAIN, INCL = "checkpoints/sd3_medium_tiny.safetensors", "checkpoints/sd3_medium_incl_clips_t5xxlfp16_tiny.safetensors"


@pytest.fixture(scope="module")
def models(comfy, tmp_path_factory):
    root = comfy.dirs["models"]
    files = build_comfy_text_encoders(FOLDER, tmp_path_factory.mktemp("te"))
    for name in ("clip_l", "clip_g", "t5xxl_fp16"):  # where current ComfyUI keeps them
        shutil.copy(files[name], root / "text_encoders" / files[name].name)
    for name in ("t5xxl_fp8_e4m3fn", "t5xxl_fp8_e4m3fn_scaled"):  # older installs: models/clip
        shutil.copy(files[name], root / "clip" / files[name].name)
    build_sd3_single_file(FOLDER, root / PLAIN, with_text_encoders=False)
    build_sd3_single_file(FOLDER, root / INCL)
    return root


def run_cold(comfy, models, base, **encoders):
    """Perceive Task with CFG (two prompts) after emptying the prompt cache; → the text encoders were built."""
    shutil.rmtree(models / "diception" / "prompt_cache", ignore_errors=True)
    before = comfy.log_path.read_text().count(BUILT)
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    graph = diception_graph(name, steps=1, guidance=2.0, prefix="te")
    graph["model"]["inputs"].update(base_model=base, **encoders)
    entry = comfy.run(graph)
    assert entry["status"]["status_str"] == "success"
    assert comfy.log_path.read_text().count(BUILT) == before + 1


def test_the_encoder_inputs_list_comfyuis_text_encoder_folders(comfy, models):
    optional = comfy.object_info()["DiceptionLoad"]["input"]["optional"]
    for kind in ("clip_l", "clip_g", "t5xxl"):
        choices = optional[kind][0]
        assert choices[0] == "auto" and optional[kind][1]["default"] == "auto" and optional[kind][1]["tooltip"]
        assert {"clip_l.safetensors", "t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors"} <= set(choices)


def test_a_plain_single_file_with_separate_encoders_and_an_incl_clips_single_file(comfy, models):
    """Where ComfyUI keeps them: the plain single file finds clip_l / clip_g in models/text_encoders and the chosen
    scaled-fp8 T5 in models/clip. Each file format (fp16, fp8, scaled fp8, incl_clips) is read and checked against the
    diffusers folder in-process (test_text_encoder_files.py); the folder with an empty cache: test_prompt_cache_restart."""
    run_cold(comfy, models, PLAIN, clip_l="auto", clip_g="auto", t5xxl="t5xxl_fp8_e4m3fn_scaled.safetensors")
    run_cold(comfy, models, INCL)


def test_several_t5_files_ask_for_a_choice(comfy, models):
    name = save_fixture_image(comfy, FIXTURES / "diception/images/rect_96x72.png", "rect.png")
    graph = diception_graph(name, prefix="te_ambiguous")
    graph["model"]["inputs"].update(base_model=PLAIN, t5xxl="auto")
    with pytest.raises(ComfyError) as e:
        comfy.run(graph)
    assert "t5xxl: several t5xxl text encoders found" in error_message(e.value.body)
    assert "choose one in Load DICEPTION's 't5xxl' input" in error_message(e.value.body)
