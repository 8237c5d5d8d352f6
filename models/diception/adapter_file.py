"""The adapter file: safetensors in diffusers' SD3 LoRA format plus DICEPTION's metadata.

Keys: ``transformer.transformer_blocks.N.attn.to_q.lora_A.weight`` / ``lora_B`` (fp32), as diffusers'
``StableDiffusion3Pipeline.save_lora_weights`` writes and ``lora_state_dict`` / ComfyUI's ``comfy/lora.py`` read.
Metadata (strings): the task name and prompt, rank, alpha, target modules, the identity of the DICEPTION checkpoint
it was trained on, and the training settings. The bytes are deterministic (the header's keys sorted): the same
adapter gives the same file. Files are published crash-safe (models.publish) under the first free number: written
complete under a hidden random temporary name, then hard-linked into place, so nothing is overwritten, an interrupted
write never looks complete and two processes (two containers, both PID 1) never take the same name.
"""

import json
import logging
import math
import re
from pathlib import Path

import torch
from safetensors import safe_open

from ..output_paths import MAX_NAME_BYTES, byte_length
from ..publish import deterministic_safetensors, fsync_path, publish_file, remove, save_error, temporary_name, write_bytes
from .adapter import KEY_PREFIX, MAX_RANK, TaskAdapter, checkpoint_identity

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


SUFFIX = "_00001.safetensors"  # what the numbering and extension add to a name


def adapter_bytes(adapter: TaskAdapter) -> bytes:
    """The safetensors file of ``adapter``, the same bytes for the same adapter (``deterministic_safetensors``)."""
    return deterministic_safetensors({k: v.contiguous() for k, v in adapter.weights.items()}, metadata(adapter))


def check_file_name(name: str, input_name: str = "name") -> str:
    """A plain file name for an adapter (no folders, not hidden, short enough with its number), or ValueError."""
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\:\x00") or name.strip(".") == "":
        raise ValueError(f"{input_name}: expected a plain file name such as 'highlight' (no folders), got {name!r}")
    if name.startswith("."):
        raise ValueError(f"{input_name}: {name!r} starts with a dot, which hides the file (Load DICEPTION Adapter does not "
                         "list hidden files); give a name such as 'highlight'")
    if byte_length(name + SUFFIX) > MAX_NAME_BYTES:
        raise ValueError(f"{input_name}: the file name {name[:40]!r}… with its number and extension would be "
                         f"{byte_length(name + SUFFIX)} bytes; the file system allows {MAX_NAME_BYTES}: give a shorter name")
    return name


def save_adapter(adapter: TaskAdapter, folder, name: str, input_name: str = "name") -> Path:
    """Write ``folder/name_00001.safetensors`` (the first free number), crash-safe (models.publish); a failure to
    write (disk full, read-only folder) raises ``SaveError`` naming ``input_name`` and the folder."""
    check_file_name(name, input_name)
    folder = Path(folder)
    temp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        content = adapter_bytes(adapter)
        temp = temporary_name(folder, name + ".safetensors")
        write_bytes(temp, lambda file: file.write(content))
        for number in range(1, 100_000):
            path = folder / f"{name}_{number:05}.safetensors"
            try:
                publish_file(temp, path)  # fails if the name is taken: never overwrites
            except FileExistsError:
                continue
            fsync_path(folder)
            return path
        raise ValueError(f"{input_name}: {name!r} has 99999 numbered files already in {folder}; choose another name")
    except OSError as e:
        raise save_error(e, input_name, f"the adapter {name!r}", folder, [temp] if temp else []) from e
    finally:
        if temp is not None:
            remove(temp)


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


def parse_metadata(path: Path, meta: dict) -> dict:
    """rank, alpha, targets and settings from the file's metadata, or an error naming the file and the entry."""
    parsed = {}
    for key, parse in (("rank", int), ("alpha", float), ("targets", json.loads), ("settings", json.loads)):
        default = {"rank": "0", "alpha": meta.get("diception.rank", "0"), "targets": "[]", "settings": "{}"}[key]
        text = meta.get(f"diception.{key}", default)
        try:
            parsed[key] = parse(text)
        except (ValueError, TypeError):
            raise ValueError(f"adapter: {path.name} has unreadable metadata: diception.{key} = {text[:60]!r} is not "
                             f"{'a whole number' if key == 'rank' else 'a number' if key == 'alpha' else 'JSON'}; "
                             "save the adapter again with Save DICEPTION Adapter") from None
    if not isinstance(parsed["targets"], list) or not isinstance(parsed["settings"], dict) or not math.isfinite(parsed["alpha"]):
        raise ValueError(f"adapter: {path.name} has unreadable metadata: expected a list of target modules, a settings "
                         "object and a finite alpha; save the adapter again with Save DICEPTION Adapter")
    return parsed


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
    parsed = parse_metadata(path, meta)
    halves = {}
    for key in keys:
        match = KEY.match(key)
        halves.setdefault(match["module"], set()).add(match["half"])
    unpaired = sorted(m for m, h in halves.items() if h != {"A", "B"})
    if unpaired:
        missing = "lora_B" if halves[unpaired[0]] == {"A"} else "lora_A"
        raise ValueError(f"adapter: {path.name} is incomplete: {len(unpaired)} layer(s) lack their {missing} weights, e.g. "
                         f"{KEY_PREFIX}{unpaired[0]}.{missing}.weight (every adapted layer needs lora_A and lora_B)")
    broken = [k for k in sorted(keys) if not torch.isfinite(tensors[k]).all()]
    if broken:
        raise ValueError(f"adapter: {path.name} has NaN or infinite weights ({len(broken)} tensors, e.g. {broken[0]}): it "
                         "would answer nonsense; train it again (a lower learning_rate) or use another file")
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
    rank = parsed["rank"]
    if ranks != {rank} or not 1 <= rank <= MAX_RANK:
        raise ValueError(f"adapter: {path.name}: its metadata says rank {rank} but its weights have rank(s) {sorted(ranks)}")
    here = checkpoint_identity(transformer)
    if meta.get("diception.checkpoint") and meta["diception.checkpoint"] != here:
        log.warning("adapter %s was trained on DICEPTION checkpoint %s; the loaded one is %s", path.name, meta["diception.checkpoint"], here)
    return TaskAdapter(
        task=task.strip() or meta.get("diception.task") or path.stem,
        prompt=meta["diception.prompt"],
        rank=rank,
        alpha=parsed["alpha"],
        targets=tuple(parsed["targets"]),
        weights={k: v.float() for k, v in tensors.items()},
        checkpoint=meta.get("diception.checkpoint", ""),
        settings=parsed["settings"],
    )

