"""Reading weight files safely, and the one place that says what a weight file really is.

``classify`` reads only a file's first bytes: safetensors, a PyTorch checkpoint (``torch.save``: zip
archive or legacy pickle), or not a checkpoint at all (empty, an HTML page, a Git LFS pointer, a plain
Python pickle, a file of the other format under the wrong suffix, random bytes) — nothing is unpickled to
find out. ``load_weights`` then reads safetensors with safetensors and PyTorch checkpoints with
``torch.load(weights_only=True)``, and turns every failure into a ``WeightsError`` naming the file and the
real reason (corrupt/truncated, pickles Python objects, wrong format for its name, unsafe torch).
"""

import json
import pickle
import struct
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .inputs import PACKAGE

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit
SAFE_PICKLE_TORCH = (2, 6)  # weights_only=True can be bypassed before torch 2.6 (CVE-2025-32434)
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pickled 0x1950a86a20f9469cfc6c

SAFETENSORS, TORCH_ZIP, TORCH_LEGACY = "safetensors", "PyTorch checkpoint (zip)", "PyTorch checkpoint (legacy pickle)"


class WeightsError(ValueError):
    """A weight file is missing, unreadable, unsafe or of the wrong model."""


WeightsError.__module__ = PACKAGE  # path-free type name for API clients (see models.inputs)


def classify(path) -> str:
    """What ``path`` holds, from its first bytes: ``SAFETENSORS``, ``TORCH_ZIP`` or ``TORCH_LEGACY``.
    Anything else raises ``WeightsError`` saying what the file looks like instead."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    if size == 0:
        raise WeightsError(f"{path.name} is empty (0 bytes), not a checkpoint: an interrupted download? Download it again")
    if head.startswith(b"PK\x03\x04"):
        return _torch_zip(path)
    if head.startswith(TORCH_LEGACY_MAGIC):
        return TORCH_LEGACY
    header = struct.unpack("<Q", head[:8])[0] if len(head) >= 9 else 0
    if head[8:9] == b"{" and header <= SAFETENSORS_MAX_HEADER:
        if header + 8 > size:
            raise WeightsError(
                f"{path.name} is a truncated safetensors file: its header announces {header} bytes but the file has "
                f"{size}; download it again"
            )
        return SAFETENSORS
    raise WeightsError(f"{path.name} is not a checkpoint: {_looks_like(head)}")


def _torch_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise WeightsError(f"{path.name} is a corrupt or truncated zip archive ({e}): an interrupted download? Download it again") from None
    if not any(name.endswith("data.pkl") for name in names):
        raise WeightsError(f"{path.name} is a zip archive but not a PyTorch checkpoint (no data.pkl; it holds {names[:3]})")
    return TORCH_ZIP


def _looks_like(head: bytes) -> str:
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "it is an HTML/XML page (a download that returned a web page instead of the file?)"
    if text.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the weights (run `git lfs pull`, or download the file itself)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return (
            "it is a plain Python pickle, not a PyTorch checkpoint written by torch.save; it was not unpickled "
            "(unpickling can run arbitrary code). Save the tensors with torch.save(state_dict) or as .safetensors"
        )
    if not head.strip(b"\x00"):
        return "it starts with only zero bytes (an incomplete or pre-allocated download?); download it again"
    if text[:1] in (b"{", b"["):
        return "it is a JSON/text file, not weights"
    return (
        f"its first bytes ({head[:8].hex(' ')}) match neither safetensors nor a PyTorch checkpoint (zip or pickle); "
        "the file is corrupt or of another kind"
    )


def torch_version() -> tuple:
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in torch.__version__.split("+")[0].split(".")[:2])


def check_torch_for_pickles(path: Path) -> None:
    """On torch < 2.6, ``torch.load(weights_only=True)`` is bypassable (CVE-2025-32434): refuse pickles there."""
    version = torch_version()
    if version < SAFE_PICKLE_TORCH:
        raise WeightsError(
            f"{path.name} is a PyTorch pickle checkpoint and this torch is {'.'.join(map(str, version))}: before "
            f"torch {'.'.join(map(str, SAFE_PICKLE_TORCH))} a crafted .pth/.pt/.bin/.ckpt can run code even with "
            "torch.load(weights_only=True) (CVE-2025-32434), so it was refused. Upgrade torch to 2.6 or newer, or "
            "use the .safetensors form of the weights (which loads on any torch)"
        )


def load_weights(path) -> dict:
    """Read a ``.safetensors`` file or a weights-only PyTorch checkpoint into (possibly nested) dicts of tensors.

    The content must match the suffix (a safetensors file named ``.pth`` is refused, saying so). Pickles are
    read with ``torch.load(weights_only=True)``: one that holds Python objects other than tensors and plain
    containers is refused, because unpickling it could run code.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"{path.name}: unsupported weight format {suffix!r}; expected one of {WEIGHT_SUFFIXES}")
    kind = classify(path)
    if (kind == SAFETENSORS) != (suffix == ".safetensors"):
        right = ".safetensors" if kind == SAFETENSORS else ".pth"
        raise WeightsError(f"{path.name} is a {kind} file despite its {suffix} suffix; rename it to {path.stem}{right}")
    if kind == SAFETENSORS:
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
            raise WeightsError(f"{path.name} is a corrupt or truncated safetensors file ({e}); download it again") from None
    check_torch_for_pickles(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e)
        if "Weights only load failed" in detail and ("GLOBAL" in detail or "global" in detail):
            raise WeightsError(
                f"{path.name} is not a weights-only checkpoint: it pickles Python objects besides tensors, "
                f"and loading it could run arbitrary code, so it was refused. Re-save only its tensors "
                f"(torch.save(state_dict)) or convert it to .safetensors. ({_unsupported(detail)})"
            ) from None
        raise WeightsError(f"{path.name} is a corrupt {kind} ({_unsupported(detail)}); download it again") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, struct.error) as e:
        raise WeightsError(f"{path.name} is a corrupt or truncated {kind} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); download it again") from None


def _unsupported(detail: str) -> str:
    """The useful line of torch's weights-only error (e.g. "Unsupported global: GLOBAL __main__.Payload")."""
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith(("unsupported", "trying to", "unpickler", "weightsunpickler error:")) and len(line) > 25:
            return line
    for i, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[0] if lines else "unreadable pickle"


def tensors_only(state: dict, path, where: str = "") -> dict:
    """A flat state dict whose every value is a tensor; a non-tensor value is a ``WeightsError`` naming its key."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(
                f"{Path(path).name}: entry {where}{key!r} is a {type(value).__name__} ({str(value)[:40]!r}), expected a tensor"
            )
    return state
