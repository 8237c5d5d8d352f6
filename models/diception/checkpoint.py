"""The DICEPTION checkpoint (``DICEPTION_v1.pth`` or its ``.safetensors`` twin) and the converter between them.

The official ``.pth`` is a dict ``{transformer, point_embedder, not_seg_embeddings, seg_embeddings,
positional_encoding_gaussian_matrix}``; the ``.safetensors`` form flattens it to ``<part>.<key>``.
"""

import argparse
import logging
from pathlib import Path

from safetensors.torch import save_file

from ..weights import WeightsError, load_weights, tensors_only

log = logging.getLogger(__name__)
PARTS = ("transformer", "point_embedder", "not_seg_embeddings", "seg_embeddings", "positional_encoding_gaussian_matrix")


def flatten(checkpoint: dict) -> dict:
    flat = {}
    for name, value in checkpoint.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{k}": v for k, v in flatten(value).items()})
        else:
            flat[name] = value
    return flat


def load_checkpoint(path) -> dict:
    """Read a DICEPTION checkpoint in either format → flat ``{'transformer.…': tensor, 'point_embedder.…': …}``.

    Only the five parts are kept, as the official loader (``inference.py``: ``ckpt['transformer']`` …) reads
    only them: other top-level entries (optimizer state, epoch, an EMA copy) are ignored and logged. Every
    value kept must be a tensor.
    """
    loaded = load_weights(path)
    if not isinstance(loaded, dict):
        raise WeightsError(f"{Path(path).name} is not a DICEPTION checkpoint: it holds a {type(loaded).__name__}, expected a dict of its parts {list(PARTS)}")
    flat = flatten(loaded)
    found = {key.split(".")[0] for key in flat}
    missing = [p for p in PARTS if p not in found]
    if missing:
        raise WeightsError(
            f"{Path(path).name} is not a DICEPTION checkpoint: it lacks {missing} "
            f"(expected the parts {list(PARTS)}, found {sorted(found)[:8]})"
        )
    ignored = sorted(found - set(PARTS))
    if ignored:
        log.info("DICEPTION: %s: ignoring the top-level entries %s (only %s are weights)", Path(path).name, ignored, list(PARTS))
    return tensors_only({k: v for k, v in flat.items() if k.split(".")[0] in PARTS}, path)


def split_checkpoint(flat: dict):
    """→ (transformer state dict, point-encoder state dict)."""
    transformer = {k[len("transformer."):]: v for k, v in flat.items() if k.startswith("transformer.")}
    points = {k: v for k, v in flat.items() if not k.startswith("transformer.")}
    return transformer, points


def convert(src, dst) -> Path:
    """``.pth`` → ``.safetensors`` (flat keys). Refuses to overwrite an existing file."""
    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst} exists; choose another output path (nothing was overwritten)")
    flat = {k: v.contiguous() for k, v in load_checkpoint(src).items()}
    save_file(flat, str(dst), metadata={"format": "diception", "source": Path(src).name})
    return dst


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert DICEPTION_v1.pth to .safetensors (weights-only read).")
    parser.add_argument("src", help="DICEPTION .pth checkpoint")
    parser.add_argument("dst", nargs="?", help="output .safetensors (default: next to src)")
    args = parser.parse_args(argv)
    dst = args.dst or str(Path(args.src).with_suffix(".safetensors"))
    print(convert(args.src, dst))


if __name__ == "__main__":
    main()
