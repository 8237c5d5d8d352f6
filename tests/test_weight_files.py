"""Weight files classified by what they are (models/weights.py), SAM and DICEPTION checkpoints checked key by key,
and the torch < 2.6 guard for pickles (CVE-2025-32434), without ComfyUI."""

import pytest
import torch
from bad_weights import Payload, write_bad
from conftest import FIXTURES
from diffusers import SD3Transformer2DModel
from diffusers.models.embeddings import get_2d_sincos_pos_embed
from safetensors.torch import load_file, save_file

from models import weights
from models.diception.loading import apply_checkpoint
from models.persam import load_sam
from models.weights import WeightsError, classify, load_weights

SAM = FIXTURES / "persam"
DICE = FIXTURES / "diception" / "model"


BAD_FILES = [  # (name, kind, what the message must say)
    ("empty.pth", "empty", "is empty (0 bytes)"),
    ("zeros.safetensors", "zeros", "starts with only zero bytes"),
    ("page.pth", "html", "HTML/XML page"),
    ("pointer.safetensors", "lfs", "Git LFS pointer"),
    ("noise.pth", "random", "match neither safetensors nor a PyTorch checkpoint"),
    ("noise.safetensors", "random", "match neither safetensors nor a PyTorch checkpoint"),
    ("plain.pth", "plain pickle", "plain Python pickle"),
    ("renamed.pth", "safetensors", "is a safetensors file despite its .pth suffix; rename it to renamed.safetensors"),
    ("renamed.safetensors", "torch", "is a PyTorch checkpoint (zip) file despite its .safetensors suffix"),
    ("cut.pth", "truncated torch", "corrupt or truncated zip archive"),
    ("cut.safetensors", "truncated safetensors", "truncated safetensors file"),
    ("archive.pth", "other zip", "zip archive but not a PyTorch checkpoint"),
]


@pytest.mark.parametrize("name,kind,message", BAD_FILES, ids=[b[0] + ":" + b[1] for b in BAD_FILES])
def test_bad_weight_files_say_what_they_really_are(tmp_path, name, kind, message):
    path = tmp_path / name
    write_bad(path, kind)
    with pytest.raises(WeightsError) as e:
        load_weights(path)
    assert name in str(e.value) and message in str(e.value), str(e.value)
    assert "could run arbitrary code" not in str(e.value)  # the old, wrong reason for all of these


def test_good_files_of_both_kinds_load(tmp_path):
    write_bad(tmp_path / "a.safetensors", "safetensors")
    write_bad(tmp_path / "a.pth", "torch")
    assert classify(tmp_path / "a.safetensors") == weights.SAFETENSORS and classify(tmp_path / "a.pth") == weights.TORCH_ZIP
    assert torch.equal(load_weights(tmp_path / "a.safetensors")["a"], load_weights(tmp_path / "a.pth")["a"])


def test_a_pickled_object_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    for legacy in (False, True):
        path = tmp_path / f"evil_{legacy}.pth"
        torch.save({"weight": torch.zeros(1), "x": Payload(marker)}, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(WeightsError, match="not a weights-only checkpoint.*mkdir"):
            load_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("version,refused", [("2.4.1", True), ("2.5.1+cu121", True), ("2.6.0", False), ("2.14.1+cpu", False)])
def test_old_torch_refuses_pickles_but_reads_safetensors(monkeypatch, version, refused):
    monkeypatch.setattr(torch, "__version__", version)
    if refused:
        with pytest.raises(WeightsError, match=r"CVE-2025-32434.*\.safetensors"):
            load_weights(SAM / "tiny_sam.pth")
    else:
        load_weights(SAM / "tiny_sam.pth")
    assert "image_encoder.pos_embed" in load_weights(SAM / "tiny_sam.safetensors")


# --- Segment Anything ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam_state():
    return load_file(str(SAM / "tiny_sam.safetensors"))


def _sam_file(tmp_path, state, config=None):
    path = tmp_path / "sam_x.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    if config is not None:
        (tmp_path / "sam_x_config.json").write_text(config)
    return path


@pytest.mark.parametrize("drop", ["image_encoder.neck.0.weight", "mask_decoder.iou_token.weight", "image_encoder.blocks.0.attn.rel_pos_h"])
def test_a_sam_missing_a_key_names_it(tmp_path, sam_state, drop):
    state = {k: v for k, v in sam_state.items() if k != drop}
    with pytest.raises(WeightsError, match=f"sam_x.safetensors.*{drop}"):
        load_sam(_sam_file(tmp_path, state))


def test_a_sam_tensor_of_the_wrong_shape_names_it(tmp_path, sam_state):
    state = dict(sam_state, **{"mask_decoder.iou_token.weight": torch.zeros(1, 7)})
    with pytest.raises(WeightsError, match="sam_x.safetensors.*mask_decoder.iou_token.weight"):
        load_sam(_sam_file(tmp_path, state))


def test_a_sam_pickle_with_string_values_names_the_entry(tmp_path, sam_state):
    path = tmp_path / "strings.pth"
    torch.save(dict(sam_state, **{"image_encoder.patch_embed.proj.weight": "oops"}), path)
    with pytest.raises(WeightsError, match="strings.pth: entry 'image_encoder.patch_embed.proj.weight' is a str"):
        load_sam(path)


@pytest.mark.parametrize("config,message", [
    ("{not json", "sam_x_config.json .*not valid JSON"),
    ("[1, 2]", "sam_x_config.json: expected a JSON object"),
    ('{"decoder_num_heads": "eight"}', "sam_x_config.json: decoder_num_heads must be a positive integer, got 'eight'"),
    ('{"decoder_num_heads": 0}', "decoder_num_heads must be a positive integer"),
    ('{"mlp_ratio": true}', "mlp_ratio must be a number"),
    ('{"pixel_mean": "grey"}', "pixel_mean must be a list of numbers"),
    ('{"decoder_heads": 8}', "unknown SAM setting 'decoder_heads'"),
])
def test_a_broken_sam_config_beside_names_the_file_and_key(tmp_path, sam_state, config, message):
    with pytest.raises(WeightsError, match=message):
        load_sam(_sam_file(tmp_path, sam_state, config))


# --- DICEPTION ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dice_ckpt():
    return torch.load(DICE / "diception_tiny.pth", weights_only=True)


@pytest.fixture()
def base_transformer():
    return SD3Transformer2DModel.from_pretrained(DICE / "tiny_sd3", subfolder="transformer")


def _dice_file(tmp_path, checkpoint, name="dice_x.pth"):
    torch.save(checkpoint, tmp_path / name)
    return tmp_path / name


def test_extra_top_level_entries_are_ignored_and_logged(tmp_path, dice_ckpt, base_transformer, caplog):
    noisy = dict(dice_ckpt, optimizer={"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4}]},
                 epoch=7, ema={"transformer": dict(dice_ckpt["transformer"])})
    with caplog.at_level("INFO"):
        transformer, points = apply_checkpoint(base_transformer, _dice_file(tmp_path, noisy), torch.float32, "tiny_sd3")
    assert "ignoring the top-level entries ['ema', 'epoch', 'optimizer']" in caplog.text
    assert torch.equal(transformer.state_dict()["proj_out.weight"], dice_ckpt["transformer"]["proj_out.weight"].float())
    assert torch.equal(points.seg_embeddings.weight, dice_ckpt["seg_embeddings"]["weight"].float())


def test_a_missing_fixed_pos_embed_buffer_is_accepted(tmp_path, dice_ckpt, base_transformer):
    """diffusers builds ``pos_embed.pos_embed`` as a fixed sin-cos table: leaving it out of the checkpoint
    (as the official strict=False loader allows) changes nothing."""
    lean = dict(dice_ckpt, transformer={k: v for k, v in dice_ckpt["transformer"].items() if k != "pos_embed.pos_embed"})
    transformer, _ = apply_checkpoint(base_transformer, _dice_file(tmp_path, lean), torch.float32, "tiny_sd3")
    config = transformer.config
    table = get_2d_sincos_pos_embed(
        transformer.pos_embed.pos_embed.shape[-1], config.pos_embed_max_size, base_size=config.sample_size // config.patch_size,
        output_type="pt",
    ).float()[None]
    # the same table, up to the 16-bit storage of the tiny fixtures (bf16: 2^-8 relative)
    assert torch.allclose(transformer.pos_embed.pos_embed, table, atol=8e-3)
    assert torch.allclose(dice_ckpt["transformer"]["pos_embed.pos_embed"].float(), table, atol=8e-3)


@pytest.mark.parametrize("part,key", [
    ("transformer", "transformer_blocks.0.attn.to_q.weight"),
    ("transformer", "pos_embed.proj.weight"),
    ("point_embedder", "0.bias"),
    ("point_embedder", "2.weight"),
])
def test_every_missing_learned_tensor_is_refused_by_name(tmp_path, dice_ckpt, base_transformer, part, key):
    broken = dict(dice_ckpt, **{part: {k: v for k, v in dice_ckpt[part].items() if k != key}})
    with pytest.raises(WeightsError, match=f"dice_x.pth.*{key.split('.')[-2]}.{key.split('.')[-1]}"):
        apply_checkpoint(base_transformer, _dice_file(tmp_path, broken), torch.float32, "tiny_sd3")


def test_a_checkpoint_without_a_part_is_not_a_diception_checkpoint(tmp_path, dice_ckpt):
    from models.diception import load_checkpoint

    broken = {k: v for k, v in dice_ckpt.items() if k != "seg_embeddings"}
    with pytest.raises(WeightsError, match=r"dice_x.pth is not a DICEPTION checkpoint: it lacks \['seg_embeddings'\]"):
        load_checkpoint(_dice_file(tmp_path, broken))


def test_dice_string_values_and_wrong_shapes_are_named(tmp_path, dice_ckpt, base_transformer):
    strings = dict(dice_ckpt, seg_embeddings={"weight": "oops"})
    with pytest.raises(WeightsError, match="entry 'seg_embeddings.weight' is a str"):
        apply_checkpoint(base_transformer, _dice_file(tmp_path, strings), torch.float32, "tiny_sd3")
    shapes = dict(dice_ckpt, transformer=dict(dice_ckpt["transformer"], **{"proj_out.weight": torch.zeros(3, 3)}))
    with pytest.raises(WeightsError, match="size mismatch for proj_out.weight"):
        apply_checkpoint(base_transformer, _dice_file(tmp_path, shapes), torch.float32, "tiny_sd3")


def test_a_converted_checkpoint_with_extras_loads_too(tmp_path, dice_ckpt, base_transformer):
    flat = load_file(str(DICE / "diception_tiny.safetensors"))
    flat["optimizer.state.0.exp_avg"] = torch.zeros(2)
    save_file(flat, str(tmp_path / "dice_x.safetensors"))
    transformer, _ = apply_checkpoint(base_transformer, tmp_path / "dice_x.safetensors", torch.float32, "tiny_sd3")
    assert torch.equal(transformer.state_dict()["proj_out.weight"], dice_ckpt["transformer"]["proj_out.weight"].float())
