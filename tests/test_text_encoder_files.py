"""SD3 text encoders from the files ComfyUI users keep (layouts of ComfyUI v0.8.0's loaders, built by
tests/tiny_models.py from the SAME tiny weights as the diffusers folder): the prompt embeddings agree with
the diffusers-folder source; fp8 files agree with the same weights rounded to fp8 exactly, and with the fp32
weights within fp8 rounding (figures in the README)."""

import pytest
import torch
from conftest import FIXTURES
from tiny_models import FP8, _fp8_scaled, _linear_weights, build_comfy_text_encoders, build_sd3_single_file

from models.diception import load_pipeline
from models.diception.prompts import encode_prompt
from models.diception.text_encoder_files import (
    EncoderWeights,
    TextEncoderFiles,
    choose_weights,
    classify,
    header_shapes,
    tokenizer_folders,
)
from models.weights import WeightsError

DICE = FIXTURES / "diception" / "model"
FOLDER = DICE / "tiny_sd3"
PROMPT = "[[image2semantic]] dog"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_comfy_text_encoders(FOLDER, tmp_path_factory.mktemp("text_encoders"))


@pytest.fixture(scope="module")
def reference():
    """The encoders as diffusers' StableDiffusion3Pipeline loads them from the folder (transformers' own loaders)."""
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    from models.diception.prompts import TextEncoders

    clip = lambda sub: CLIPTextModelWithProjection.from_pretrained(FOLDER, subfolder=sub).eval()  # noqa: E731
    encoders = TextEncoders(
        tokenizer=CLIPTokenizer.from_pretrained(FOLDER, subfolder="tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(FOLDER, subfolder="tokenizer_2"),
        tokenizer_3=T5TokenizerFast.from_pretrained(FOLDER, subfolder="tokenizer_3"),
        text_encoder=clip("text_encoder"), text_encoder_2=clip("text_encoder_2"),
        text_encoder_3=T5EncoderModel.from_pretrained(FOLDER, subfolder="text_encoder_3").eval(),
    )
    return encoders, encode_prompt(encoders, PROMPT)


def test_the_folder_source_is_the_diffusers_folder_and_its_key_covers_the_tokenizers(reference, tmp_path):
    import shutil

    folder = shutil.copytree(FOLDER, tmp_path / "tiny_sd3")
    source = TextEncoderFiles(choose_weights(folder, {}, [], folder), torch.float32, tokenizer_folders(folder, {}), folder)
    embeds, pooled = encode_prompt(source.load(), PROMPT)
    assert torch.equal(embeds, reference[1][0]) and torch.equal(pooled, reference[1][1])
    before = source.identity
    vocab = folder / "tokenizer_2" / "vocab.json"
    vocab.write_text(vocab.read_text().replace('"a": ', '"A": ', 1))  # same weights, another tokenizer
    assert source.identity != before


def embeddings(files, clip_l="clip_l_projected", clip_g="clip_g", t5xxl="t5xxl_fp16"):
    weights = {"clip_l": EncoderWeights(files[clip_l]), "clip_g": EncoderWeights(files[clip_g]), "t5xxl": EncoderWeights(files[t5xxl])}
    return encode_prompt(TextEncoderFiles(weights, torch.float32, tokenizer_folders(FOLDER, {}), FOLDER).load(), PROMPT)


def test_each_file_is_recognised_by_its_weights(files):
    for name, path in files.items():
        assert classify(header_shapes(path), FOLDER) == ("t5xxl" if name.startswith("t5xxl") else name[:6]), name
    assert classify(header_shapes(DICE / "diception_tiny.safetensors"), FOLDER) is None


def test_fp16_files_agree_with_the_diffusers_folder(files, reference):
    (embeds, pooled) = embeddings(files)
    assert (embeds - reference[1][0]).abs().max() < 1e-5 and (pooled - reference[1][1]).abs().max() < 1e-5


def test_clip_l_without_text_projection_pools_unprojected_and_clipsave_layout_reads(files, reference):
    encoders, (ref_embeds, ref_pooled) = reference
    embeds, pooled = embeddings(files, clip_l="clip_l", clip_g="clip_g_clipsave")
    assert (embeds - ref_embeds).abs().max() < 1e-5
    clip = encoders.text_encoder
    ids = encoders.tokenizer([PROMPT], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    unprojected = clip.text_model(ids).pooler_output  # SD3's clip_l ships without text_projection
    width = unprojected.shape[-1]
    assert (pooled[:, :width] - unprojected).abs().max() < 1e-5 and (pooled[:, width:clip.config.projection_dim] == 0).all()
    assert (pooled[:, clip.config.projection_dim:] - ref_pooled[:, clip.config.projection_dim:]).abs().max() < 1e-5


def fp8_reference(encoders, scaled: bool):
    """The folder's T5 with its weights rounded as the fp8 file stores them (independent of the loader)."""
    state = encoders.text_encoder_3.state_dict()
    linear = set(_linear_weights(state))
    rounded = {}
    for key, value in state.items():
        if scaled and key in linear:
            q, scale = _fp8_scaled(value)
            rounded[key] = q.float() * scale
        else:
            rounded[key] = value.to(FP8).float() if not scaled else value.half().float()
    t5 = type(encoders.text_encoder_3)(encoders.text_encoder_3.config).eval()
    t5.load_state_dict(rounded)
    return encode_prompt(type(encoders)(**{**encoders.__dict__, "text_encoder_3": t5}), PROMPT)


@pytest.mark.parametrize("name", ["t5xxl_fp8_e4m3fn", "t5xxl_fp8_e4m3fn_scaled", "t5xxl_fp8_comfy_quant", "t5xxl_fp8_metadata"])
def test_fp8_t5_is_dequantised_exactly_and_agrees_within_fp8_rounding(files, reference, name):
    encoders, (ref_embeds, _) = reference
    embeds, _ = embeddings(files, t5xxl=name)
    expected, _ = fp8_reference(encoders, scaled=name != "t5xxl_fp8_e4m3fn")
    assert (embeds - expected).abs().max() < 1e-5  # the loader dequantises exactly as stored
    t5, ref_t5 = embeds[:, 77:], ref_embeds[:, 77:]
    rel = ((t5 - ref_t5).norm() / ref_t5.norm()).item()
    # measured on these tiny weights: rel-L2 0.079 (scaled fp8), 0.133 (plain e4m3fn; small weights fall into subnormals)
    assert rel < (0.1 if "scaled" in name or "quant" in name or "metadata" in name else 0.16), rel


def test_the_incl_clips_single_file_agrees_with_the_folder(tmp_path, reference):
    single = build_sd3_single_file(FOLDER, tmp_path / "sd3_incl_clips.safetensors")
    pipe = load_pipeline(single, DICE / "diception_tiny.pth", torch.float32, tmp_path / "c", {"clip": FOLDER / "tokenizer", "t5": FOLDER / "tokenizer_3"}, configs=FOLDER)
    embeds, pooled = encode_prompt(pipe.text_encoder_source.load(), PROMPT)
    assert torch.allclose(embeds, reference[1][0], atol=1e-5) and torch.allclose(pooled, reference[1][1], atol=1e-5)


def test_plain_single_file_finds_the_separate_encoders_and_runs_with_an_empty_cache(tmp_path, files):
    bare = build_sd3_single_file(FOLDER, tmp_path / "sd3_medium.safetensors", with_text_encoders=False)
    candidates = [files["clip_l_projected"], files["clip_g"], files["t5xxl_fp16"]]
    tokenizers = {"clip": FOLDER / "tokenizer", "t5": FOLDER / "tokenizer_3"}
    pipe = load_pipeline(bare, DICE / "diception_tiny.pth", torch.float32, tmp_path / "c1", tokenizers, configs=FOLDER,
                         text_encoder_candidates=candidates)
    folder = load_pipeline(FOLDER, DICE / "diception_tiny.pth", torch.float32, tmp_path / "c2")
    image = torch.rand(1, 40, 48, 3)
    a = pipe(image, "depth", steps=2, guidance=2.0, resolution=64)
    assert torch.allclose(a, folder(image, "depth", steps=2, guidance=2.0, resolution=64), atol=1e-4)
    assert list((tmp_path / "c1").rglob("*.safetensors"))  # the prompt cache was filled from the separate files


def test_choosing_files(tmp_path, files):
    every = list(files.values())
    plain = build_sd3_single_file(FOLDER, tmp_path / "sd3_medium.safetensors", with_text_encoders=False)
    only_one = [files["clip_l"], files["clip_g"], files["t5xxl_fp16"]]
    assert {k: w.path.name for k, w in choose_weights(plain, {}, only_one, FOLDER).items()} == {
        "clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}
    with pytest.raises(WeightsError, match=r"clip_l: several clip_l text encoders found .*choose one in Load DICEPTION's 'clip_l' input"):
        choose_weights(plain, {}, every, FOLDER)
    chosen = choose_weights(plain, {"clip_l": files["clip_l"], "clip_g": files["clip_g"], "t5xxl": files["t5xxl_fp8_metadata"]}, every, FOLDER)
    assert {k: w.path.name for k, w in chosen.items()} == {"clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors", "t5xxl": "t5xxl_fp8_metadata.safetensors"}
    with pytest.raises(WeightsError, match="clip_l: t5xxl_fp16.safetensors holds t5xxl weights; choose a clip_l file"):
        choose_weights(FOLDER, {"clip_l": files["t5xxl_fp16"]}, every, FOLDER)
    # a diffusers folder brings its own encoders; a chosen file replaces one of them
    mixed = choose_weights(FOLDER, {"t5xxl": files["t5xxl_fp16"]}, every, FOLDER)
    assert mixed["clip_l"].path == FOLDER / "text_encoder" and mixed["t5xxl"].path == files["t5xxl_fp16"]


def test_unsupported_quantisation_is_a_clear_error(tmp_path, files):
    from safetensors.torch import load_file, save_file

    state = load_file(str(files["t5xxl_fp8_comfy_quant"]))
    key = next(k for k in state if k.endswith(".comfy_quant"))
    state[key] = torch.tensor(list(b'{"format": "nvfp4"}'), dtype=torch.uint8)
    save_file(state, str(tmp_path / "t5xxl_nvfp4.safetensors"))
    weights = {"clip_l": EncoderWeights(files["clip_l"]), "clip_g": EncoderWeights(files["clip_g"]), "t5xxl": EncoderWeights(tmp_path / "t5xxl_nvfp4.safetensors")}
    with pytest.raises(WeightsError, match=r"quantised as 'nvfp4'; supported: \['float8_e4m3fn', 'float8_e5m2'\]"):
        TextEncoderFiles(weights, torch.float32, tokenizer_folders(FOLDER, {}), FOLDER).load()
