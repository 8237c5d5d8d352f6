"""The engine's host inside ComfyUI (``models.host.Host``): model management, progress bar, interrupt.

- ``prepare(part, modules)``: the modules are loaded through ComfyUI's model management. Each set of weights
  gets ONE ModelPatcher, made the first time it is prepared and kept: a pipeline with adapters attached prepares
  the same base modules as the pipeline it came from (it shares this host), so ComfyUI accounts for those weights
  once. The text encoders are the exception: transient, wrapped on their own devices and unloaded on ``release``.
- ``progress(done, total)``: ComfyUI's progress bar (a new bar for each run: when ``done`` goes down or ``total``
  changes), and an interrupt check at every call; ``min_interval`` thins the bar (never the check).
- ``interrupt()``: raises ComfyUI's interrupt exception when the user pressed Cancel.
"""

from ..models.host import Host
from . import comfy_adapter, text_encoder_device


class ComfyHost(Host):
    def __init__(self, min_interval: float = 0.0):
        self.min_interval = min_interval
        self.patchers = {}  # ids of a set of modules → (the modules, their ModelPatcher)
        self._transient = {}
        self._bar, self._run = None, None

    def patcher(self, modules):
        """The one ModelPatcher of this set of modules (made on first use)."""
        key = tuple(id(m) for m in modules)
        kept = self.patchers.get(key)
        if kept is None or any(a is not b for a, b in zip(kept[0], modules)):
            kept = (list(modules), comfy_adapter.managed(modules))
            self.patchers[key] = kept
        return kept[1]

    def prepare(self, part, modules):
        if part == "text_encoders":  # ComfyUI's text-encoder devices; the CPU where they cannot fit whole
            device = text_encoder_device.text_encoder_device(text_encoder_device.module_bytes(modules))
            patcher = self._transient[part] = comfy_adapter.managed(modules, device, comfy_adapter.text_encoder_offload_device())
        else:
            patcher = self.patcher(modules)
        comfy_adapter.load([patcher])

    def release(self, part, modules):
        patcher = self._transient.pop(part, None)
        if patcher is not None:
            comfy_adapter.unload(patcher)

    def progress(self, done, total):
        if self._bar is None or total != self._run[1] or done < self._run[0]:
            self._bar = comfy_adapter.Progress(total, self.min_interval)  # a new run (a node call)
        self._run = (done, total)
        self._bar(done, total)  # checks for an interrupt first

    def interrupt(self):
        comfy_adapter.check_interrupt()
