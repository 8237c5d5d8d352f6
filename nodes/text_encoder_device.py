"""Where SD3's text encoders run: ComfyUI's text-encoder device policy, and only where they fit whole.

ComfyUI puts text encoders on ``text_encoder_device()`` (the GPU in normal/high-VRAM modes, the CPU in
low-VRAM/no-VRAM modes) and keeps them on ``text_encoder_offload_device()``; ComfyUI's own CLIP layers can be
loaded partially, the transformers encoders here cannot (they are loaded whole). So a GPU whose total memory
cannot hold them (T5-XXL alone is 9.5 GB in bf16) is never asked to: they run on the CPU, once per missing
prompt, and are released afterwards. When they fit but other models hold the memory, ComfyUI's
``free_memory`` unloads those first, as before any load.
"""

import logging

import torch

import comfy.model_management as mm

log = logging.getLogger(__name__)
MARGIN = 1.2  # ComfyUI's text_encoder_initial_device(): model_size * 1.2 must fit


def module_bytes(modules) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in list(m.parameters()) + list(m.buffers()))


def text_encoder_device(size_bytes: int) -> torch.device:
    """The device to run text encoders of ``size_bytes`` on (reads ComfyUI's device policy and memory figures)."""
    load, offload = mm.text_encoder_device(), mm.text_encoder_offload_device()
    if load.type == "cpu":
        return load
    cpu = offload if offload.type == "cpu" else torch.device("cpu")
    need = size_bytes * MARGIN + mm.minimum_inference_memory()
    total = mm.get_total_memory(load)
    if need > total:
        log.info("DICEPTION: text encoders (%.1f GB) do not fit on %s (%.1f GB); running them on the CPU", size_bytes / 1e9, load, total / 1e9)
        return cpu
    if mm.get_free_memory(load) < need:
        mm.free_memory(need, load)
        if mm.get_free_memory(load) < need:
            log.info("DICEPTION: not enough free memory on %s for the text encoders; running them on the CPU", load)
            return cpu
    return load
