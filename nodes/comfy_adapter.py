"""ComfyUI's model management, progress bar and interrupt, as the pack uses them, with the branches on ComfyUI's
version they need (``load``, ``tokenizer_dirs``). Other modules meet version differences of their own:
``model_folders`` (``text_encoders`` in current builds, only ``clip`` in older ones) and ``text_encoder_device``
(ComfyUI's text-encoder device policy and memory figures).

Checked against the 2024-03 test engine and ComfyUI v0.8.0+.
"""

import inspect
import time

import torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils


class Holder(torch.nn.Module):
    """A plain module around model parts: ``ModelPatcher`` sets attributes (``device`` …) on the module it
    wraps, which diffusers models and ``segment_anything.Sam`` refuse (read-only properties)."""

    def __init__(self, modules):
        super().__init__()
        self.parts = torch.nn.ModuleList(modules)


def managed(modules, load_device=None, offload_device=None) -> "comfy.model_patcher.ModelPatcher":
    """Wrap model parts so that ComfyUI's model management loads them to its device and offloads them."""
    return comfy.model_patcher.ModelPatcher(
        Holder(modules), load_device=load_device or mm.get_torch_device(), offload_device=offload_device or mm.unet_offload_device()
    )


_FULL_LOAD = "force_full_load" in inspect.signature(mm.load_models_gpu).parameters


def load(patchers) -> None:
    """Put the wrapped parts on the compute device (whole: plain torch layers cannot be partially loaded)."""
    if _FULL_LOAD:
        mm.load_models_gpu(list(patchers), force_full_load=True)
    else:
        mm.load_models_gpu(list(patchers))


def unload(patcher) -> None:
    """Drop one wrapped model from ComfyUI's loaded list and move it back to the offload device."""
    for i, loaded in enumerate(list(mm.current_loaded_models)):
        if loaded.model is patcher:
            mm.current_loaded_models.pop(i).model_unload()
            break
    mm.soft_empty_cache()


def text_encoder_offload_device() -> torch.device:
    return mm.text_encoder_offload_device()


def device() -> torch.device:
    return mm.get_torch_device()


def auto_dtype() -> torch.dtype:
    dev = mm.get_torch_device()
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def tokenizer_dirs() -> dict:
    """CLIP and T5 tokenizer folders that ComfyUI itself ships (used offline for SD3 single files)."""
    import os

    import comfy.sd1_clip

    root = os.path.dirname(os.path.dirname(comfy.sd1_clip.__file__))
    candidates = {
        "clip": ["comfy/sd1_tokenizer"],
        "t5": ["comfy/text_encoders/t5_tokenizer", "comfy/t5_tokenizer"],
    }
    found = {}
    for kind, paths in candidates.items():
        for rel in paths:
            if os.path.isdir(os.path.join(root, rel)):
                found[kind] = os.path.join(root, rel)
                break
        else:
            found[kind] = None
    return found


def progress_text(text: str, node_id) -> None:
    """Show ``text`` on node ``node_id`` while it runs, where the server can (``send_progress_text``: ComfyUI v0.8.0;
    the 2024-03 build has none, nor has a run without a server). A courtesy: never raises."""
    if node_id is None:
        return
    try:
        from server import PromptServer

        send = getattr(PromptServer.instance, "send_progress_text", None)
        if send:
            send(text, node_id)
    except Exception:
        pass


def check_interrupt() -> None:
    mm.throw_exception_if_processing_interrupted()


def each(items):
    """Iterate ``items`` (e.g. the images of a batch), checking for an interrupt before each one."""
    for item in items:
        check_interrupt()
        yield item


class Progress:
    """ComfyUI's progress bar, checking for an interrupt at EVERY call (a cheap flag test), so a loop that
    reports each unit of work is interruptible within one unit, however many units it has.
    ``min_interval`` (seconds) thins the bar's updates for loops of thousands of tiny steps (the last is
    always shown); the interrupt check is never thinned."""

    def __init__(self, total: int, min_interval: float = 0.0):
        self.bar = comfy.utils.ProgressBar(total)
        self.min_interval, self._shown = min_interval, float("-inf")

    def __call__(self, done: int, total: int) -> None:
        check_interrupt()
        now = time.monotonic()
        if done >= total or now - self._shown >= self.min_interval:
            self._shown = now
            self.bar.update_absolute(done, total)
