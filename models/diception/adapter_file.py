"""The adapter file: safetensors in diffusers' SD3 LoRA format plus DICEPTION's metadata.

Keys: ``transformer.transformer_blocks.N.attn.to_q.lora_A.weight`` / ``lora_B`` (fp32), as diffusers'
``StableDiffusion3Pipeline.save_lora_weights`` writes and ``lora_state_dict`` / ComfyUI's ``comfy/lora.py`` read.
Metadata (strings): the task name and prompt, rank, alpha, target modules, the identity of the DICEPTION checkpoint
it was trained on, and the training settings. Files are written to a temporary name and renamed into place, under
the first free number, so nothing is overwritten and an interrupted write never looks complete.
"""

import json
import logging
import os
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .adapter import MAX_RANK, TaskAdapter, checkpoint_identity

FORMAT = "diception-task-adapter/1"
KEY = re.compile(r"^transformer\.(?P<module>.+)\.lora_(?P<half>[AB])\.weight$")
EXAMPLE_KEY = "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"
log = logging.getLogger(__name__)


def metadata(adapter: TaskAdapter) -> dict:
    return {
        "format": "pt",
        "diception.format": FORMAT,
        "diception.task": adapter.task,
        "diception.prompt": adapter.prompt,
        "diception.rank": str(adapter.rank),
        "diception.alpha": repr(float(adapter.alpha)),
        "diception.targets": json.dumps(list(adapter.targets)),
        "diception.checkpoint": adapter.checkpoint,
        "diception.settings": json.dumps(adapter.settings, default=str),
    }


def save_adapter(adapter: TaskAdapter, folder, name: str) -> Path:
    """Write ``folder/name_00001.safetensors`` (the first free number): temp file, then a no-overwrite link."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.partial"
    save_file({k: v.contiguous() for k, v in adapter.weights.items()}, str(tmp), metadata=metadata(adapter))
    try:
        for number in range(1, 100_000):
            path = folder / f"{name}_{number:05}.safetensors"
            try:
                os.link(tmp, path)  # fails if the name is taken: never overwrites
                return path
            except FileExistsError:
                continue
        raise ValueError(f"name: {name!r} has 99999 numbered files already in {folder}; choose another name")
    finally:
        tmp.unlink(missing_ok=True)


def describe_layout(keys) -> str:
    """What a LoRA that is not in our format looks like it is for (for the error message)."""
    sample = sorted(keys)[0] if keys else ""
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        if any("joint_blocks" in k for k in keys):
            return "an SD3 LoRA in ComfyUI's / kohya's own layout (lora_unet_joint_blocks_…)"
        return "a kohya-style LoRA for another model (e.g. SD1.5 / SDXL: lora_unet_…, lora_te…)"
    if any(k.startswith("diffusion_model.") or ".joint_blocks." in k for k in keys):
        return "an SD3 LoRA in ComfyUI's own layout (diffusion_model.joint_blocks…)"
    if any(k.startswith("unet.") or "down_blocks" in k or "up_blocks" in k for k in keys):
        return "a LoRA for a UNet model (e.g. SDXL)"
    return f"a file with keys such as {sample!r}"


def read_tensors(path):
    """(tensors, metadata) of a safetensors file, or an error naming the input for a damaged/truncated one."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a truncated header or data
        raise ValueError(
            f"adapter: {path.name} is not a readable safetensors file (truncated or damaged: {e}); save the adapter again"
        ) from None
    return tensors, meta


def load_adapter(path, transformer: torch.nn.Module, task: str = "") -> TaskAdapter:
    """Read an adapter file and check that it fits ``transformer`` (a DICEPTION transformer without adapters)."""
    path = Path(path)
    tensors, meta = read_tensors(path)
    keys = list(tensors)
    bad = [k for k in keys if not KEY.match(k)]
    if not keys or bad:
        raise ValueError(
            f"adapter: {path.name} is not a DICEPTION adapter: it looks like {describe_layout(keys)}; expected keys like "
            f"{EXAMPLE_KEY!r} (diffusers' SD3 LoRA format, as Save DICEPTION Adapter writes)"
        )
    if meta.get("diception.format") != FORMAT or not meta.get("diception.prompt"):
        raise ValueError(
            f"adapter: {path.name} has SD3 LoRA keys but no DICEPTION task metadata (task prompt, rank); it was not "
            "trained by Train DICEPTION Adapter, so DICEPTION cannot know which task it answers"
        )
    modules = dict(transformer.named_modules())
    ranks = set()
    for key, value in tensors.items():
        match = KEY.match(key)
        module = modules.get(match["module"])
        if isinstance(module, torch.nn.Linear) and value.ndim == 2:
            width_in, width_out = module.in_features, module.out_features
        elif isinstance(module, torch.nn.Conv2d) and value.ndim == 4:
            width_in, width_out = module.in_channels, module.out_channels
        else:
            raise ValueError(f"adapter: {path.name} adapts {match['module']!r}, which this DICEPTION transformer does not have as a linear layer")
        rank, width = (value.shape[0], width_in) if match["half"] == "A" else (value.shape[1], width_out)
        other = value.shape[1] if match["half"] == "A" else value.shape[0]
        if other != width:
            raise ValueError(
                f"adapter: {path.name} was made for another model: {key} has shape {tuple(value.shape)}, which does not fit "
                f"{match['module']} ({width_in} → {width_out})"
            )
        ranks.add(rank)
    rank = int(meta.get("diception.rank", "0"))
    if ranks != {rank} or not 1 <= rank <= MAX_RANK:
        raise ValueError(f"adapter: {path.name}: its metadata says rank {rank} but its weights have rank(s) {sorted(ranks)}")
    here = checkpoint_identity(transformer)
    if meta.get("diception.checkpoint") and meta["diception.checkpoint"] != here:
        log.warning("adapter %s was trained on DICEPTION checkpoint %s; the loaded one is %s", path.name, meta["diception.checkpoint"], here)
    return TaskAdapter(
        task=task.strip() or meta.get("diception.task") or path.stem,
        prompt=meta["diception.prompt"],
        rank=rank,
        alpha=float(meta.get("diception.alpha", rank)),
        targets=tuple(json.loads(meta.get("diception.targets", "[]"))),
        weights={k: v.float() for k, v in tensors.items()},
        checkpoint=meta.get("diception.checkpoint", ""),
        settings=json.loads(meta.get("diception.settings", "{}")),
    )

