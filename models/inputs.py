"""Bad input, refused the same way everywhere: ``InputError`` and the image-batch check every entry point shares.

Errors are named for API clients by a stable, path-free type name: ComfyUI reports an exception's type as its
class's ``__module__`` + name, and the pack's modules are named after the folder ComfyUI found it in (a server path
such as ``/srv/ComfyUI/custom_nodes/comfyui-diception-persam.nodes.validation``). The pack's own exceptions
therefore carry ``PACKAGE`` as their ``__module__``: clients see ``comfyui_diception_persam.InputError``.
"""

import torch

PACKAGE = "comfyui_diception_persam"
IMAGE_LAYOUT = "(batch, height, width, channels)"


class InputError(ValueError):
    """An input does not match what the operation expects; the message names the input and what was expected."""


InputError.__module__ = PACKAGE


def check_images(name: str, images, channels=None) -> None:
    """An IMAGE batch: a (B, H, W, C) tensor, non-empty, with finite values only (NaN would silently turn black);
    ``channels`` (e.g. 3) when the operation needs that many."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name}: expected an IMAGE tensor {IMAGE_LAYOUT}, got {type(images).__name__}")
    if images.ndim != 4 or 0 in images.shape:
        raise InputError(f"{name}: expected a non-empty IMAGE {IMAGE_LAYOUT}, got shape {tuple(images.shape)}")
    if channels is not None and images.shape[-1] != channels:
        raise InputError(f"{name}: expected {channels} channels (RGB), got shape {tuple(images.shape)}")
    check_finite(name, "IMAGE", images)


def check_finite(name: str, kind: str, value: torch.Tensor) -> None:
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise InputError(
            f"{name}: the {kind} has {bad} non-finite value(s) (NaN or infinity); expected finite pixel values "
            "(check the node that produced it)"
        )
