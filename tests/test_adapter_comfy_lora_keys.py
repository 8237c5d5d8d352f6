"""ComfyUI v0.8.0's own LoRA reader (``comfy/lora.py``: ``model_lora_keys_unet`` + ``load_lora``, applied by its
``ModelPatcher``) maps every key of a DICEPTION adapter file onto an SD3 model, at the right place: run in a subprocess
inside ComfyUI's source tree (.cache/comfyui-v0.8.0, unpacked by scripts/setup.sh), on a tiny SD3 single file and an
adapter with non-zero A and B for the same transformer; ComfyUI's patched weights are compared with the weights
diffusers merges from the same file (a wrong offset into the fused qkv would move a block of rows)."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import SD3Transformer2DModel
from safetensors.torch import load_file, save_file
from tiny_models import transformer_to_single_file

from models.diception.adapter import TARGET_PRESETS, TaskAdapter, adapter_weights, attach, checkpoint_identity
from models.diception.adapter_file import save_adapter

COMFYUI = Path(__file__).resolve().parent.parent / ".cache" / "comfyui-v0.8.0"

CHECK = r'''
import json, logging, sys
comfy_root, single_file, adapter, patched = sys.argv[1:5]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, comfy_root)
import comfy.options
comfy.options.enable_args_parsing()
import comfy.lora, comfy.model_detection, comfy.model_patcher, torch
from safetensors.torch import load_file, save_file
sd = load_file(single_file)
model = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.").get_model(sd, "model.diffusion_model.")
model.load_model_weights(sd, "model.diffusion_model.")
key_map = comfy.lora.model_lora_keys_unet(model, {})
missed = []
class Catch(logging.Handler):
    def emit(self, record):
        if "not loaded" in record.getMessage():
            missed.append(record.getMessage())
logging.getLogger().addHandler(Catch())
lora = load_file(adapter)
patches = comfy.lora.load_lora(lora, key_map)
patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
patcher.add_patches(patches, 1.0)
patcher.patch_model()
save_file({k: v.contiguous() for k, v in model.diffusion_model.state_dict().items()}, patched)
print(json.dumps({"model": type(model).__name__, "lora_tensors": len(lora), "patched_weights": len(patches), "not_loaded": missed}))
'''


@pytest.mark.skipif(not (COMFYUI / "comfy" / "lora.py").is_file(), reason="no ComfyUI v0.8.0 source in .cache (scripts/setup.sh unpacks it)")
def test_comfyui_maps_every_adapter_key_onto_sd3(tmp_path):
    # ComfyUI reads an SD3 single file's depth as hidden size / 64, so this model keeps hidden = 64 × its 2 layers
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=64, num_attention_heads=2,
        joint_attention_dim=64, caption_projection_dim=128, pooled_projection_dim=40, out_channels=16, pos_embed_max_size=24,
    )
    single = {"model.diffusion_model." + k: v.contiguous() for k, v in transformer_to_single_file(transformer.state_dict(), 2).items()}
    save_file(single, str(tmp_path / "sd3_check.safetensors"))
    identity = checkpoint_identity(transformer)
    adapted = copy.deepcopy(transformer)
    every = tuple(dict.fromkeys(t for targets in TARGET_PRESETS.values() for t in targets))  # every layer a preset trains
    attach(adapted, "task0", 4, every, seed=1)
    g = torch.Generator().manual_seed(2)  # non-zero B, different per row: a misplaced slice cannot match
    weights = {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in adapter_weights(adapted, "task0").items()}
    path = save_adapter(TaskAdapter("invert", "[[image2invert]]", 4, 4.0, every, weights, identity), tmp_path, "invert")
    patched_file = tmp_path / "comfy_patched.safetensors"
    run = subprocess.run([sys.executable, "-c", CHECK, str(COMFYUI), str(tmp_path / "sd3_check.safetensors"), str(path), str(patched_file)],
                         cwd=COMFYUI, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(report)
    # attention: 2 blocks × 8 projections − the last block's to_add_out = 15 layers; adaLN: 2 × 2; MLP: 2 × 2 image
    # stream + 2 text stream (the last block has none) = 6; 25 layers, each an A and a B tensor, all mapped
    assert report == {"model": "SD3", "lora_tensors": 50, "patched_weights": 25, "not_loaded": []}

    # diffusers' own merge of the same file: load it as a LoRA adapter, fuse it into the weights
    from diffusers import StableDiffusion3Pipeline

    state = StableDiffusion3Pipeline.lora_state_dict(str(path))
    state = state[0] if isinstance(state, tuple) else state
    merged = copy.deepcopy(transformer)
    merged.load_lora_adapter(state, prefix="transformer", adapter_name="check")
    merged.fuse_lora(lora_scale=1.0)
    merged.unload_lora()
    expected = transformer_to_single_file(merged.state_dict(), 2)
    original = transformer_to_single_file(transformer.state_dict(), 2)
    comfy = load_file(str(patched_file))
    changed = [k for k in expected if not torch.equal(expected[k], original[k])]
    # in the single file q, k, v are one fused qkv: per block x qkv, x proj, context qkv, context proj (last: no proj),
    # x and context adaLN_modulation, x mlp fc1 and fc2, context mlp fc1 and fc2 (last: none)
    assert len(changed) == 7 + 4 + 6, changed
    for key in changed:
        assert torch.allclose(comfy[key].float(), expected[key].float(), atol=1e-5, rtol=0), (key, (comfy[key] - expected[key]).abs().max(), (comfy[key] - original[key]).abs().max(), (expected[key] - original[key]).abs().max())
