"""The engine's host: what runs the engine (ComfyUI, the collection labeller, a script) and how the engine talks to it.

One small object, passed into the engine (``DicePipeline(host=...)``, ``build_reference(..., host=...)``,
``segment_frames(..., host=...)``, training through the pipeline it trains): the engine never reaches for a
global, and a host never patches attributes onto engine objects.

- ``prepare(part, modules)``: ``modules`` (a list of ``torch.nn.Module``) are about to run; put them on the
  compute device (ComfyUI: load them through its model management). ``part`` names what they are:
  ``"denoiser"``, ``"vae"``, ``"text_encoders"``, ``"sam"``.
- ``release(part, modules)``: the engine is done with a transient part (the text encoders): offload or forget it.
- ``progress(done, total)``: ``done`` of ``total`` units of work are finished (units: image-steps, frames,
  optimiser steps). A new run starts when ``done`` goes down or ``total`` changes.
- ``interrupt()``: raise if the user asked to stop; the engine calls it between units of work (``progress``
  calls it too).

``Host()`` is the do-nothing host: modules stay where they are (the caller placed them), no progress, no interrupt.
"""


class Host:
    """A host that leaves everything where the caller put it. Subclass it (or give any object with these four
    methods) to manage devices, show progress or stop a run."""

    def prepare(self, part: str, modules: list) -> None:
        pass

    def release(self, part: str, modules: list) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        self.interrupt()

    def interrupt(self) -> None:
        pass


class CallbackHost(Host):
    """The do-nothing host with a ``callback(done, total)`` for progress (raise from it to interrupt): the plain
    callable the engine took before hosts, for scripts and tests."""

    def __init__(self, callback):
        self.callback = callback

    def progress(self, done: int, total: int) -> None:
        if self.callback is not None:
            self.callback(done, total)


def host_for(host=None, callback=None) -> Host:
    """``host``, or a ``CallbackHost`` around ``callback``, or the do-nothing host."""
    if host is not None and callback is not None:
        raise ValueError("give either a host or a callback, not both")
    return host if host is not None else CallbackHost(callback) if callback is not None else Host()
