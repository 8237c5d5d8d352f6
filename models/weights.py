"""Reading weight files safely: safetensors, or pickles restricted to tensors (``weights_only``)."""

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES


class WeightsError(ValueError):
    """A weight file is missing, unreadable, unsafe or of the wrong model."""


def load_weights(path) -> dict:
    """Read a ``.safetensors`` file or a weights-only pickle into (possibly nested) dicts of tensors.

    Pickles are read with ``torch.load(weights_only=True)``: a pickle that holds Python objects
    other than tensors and plain containers is refused, because unpickling it could run code.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            return load_file(str(path), device="cpu")
        if suffix in PICKLE_SUFFIXES:
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"{path.name} is not a weights-only checkpoint: it pickles Python objects besides tensors, "
            f"and loading it could run arbitrary code, so it was refused. Re-save only its tensors "
            f"(torch.save(state_dict)) or convert it to .safetensors. ({str(e).splitlines()[0]})"
        ) from None
    except (SafetensorError, RuntimeError, EOFError, OSError) as e:
        raise WeightsError(f"could not read {path}: the file is corrupt or truncated ({e})") from None
    raise WeightsError(f"{path.name}: unsupported weight format {suffix!r}; expected one of {WEIGHT_SUFFIXES}")
