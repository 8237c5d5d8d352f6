"""How far the same fp32 DICEPTION answer moves when only the memory addresses of its weights change: the
measurement behind the tolerance of tests/test_diception_engine.py::test_a_single_file_sd3_checkpoint_gives_the_same_answers.

    python bench/fp32_layout_spread.py

A single-file checkpoint and a diffusers folder give bitwise-equal weights, but at other byte offsets in memory
(safetensors views of one file, against separate allocations); CPU matrix kernels pick their blocking from the
alignment, so fp32 sums round differently. This re-places every weight of the tiny model's transformer and text
encoders at byte offsets 0, 4, …, 60 of fresh buffers and prints how far the answer moves from offset 0.
"""

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import FIXTURES  # noqa: E402
from models.diception import load_pipeline  # noqa: E402

DICE = FIXTURES / "diception" / "model"


def place_at(module: torch.nn.Module, offset: int) -> None:
    """Same values, new storage starting ``offset`` bytes past an allocation's start."""
    for p in module.parameters():
        storage = torch.empty(p.numel() + 16, dtype=p.dtype)
        start = offset // p.element_size()
        view = storage[start:start + p.numel()].view_as(p)
        view.copy_(p.data)
        p.data = view


def answer(offset: int, image: torch.Tensor) -> torch.Tensor:
    pipe = load_pipeline(DICE / "tiny_sd3", DICE / "diception_tiny.pth", torch.float32, Path(tempfile.mkdtemp()))
    load = pipe.text_encoder_source.load

    def placed():
        encoders = load()
        for module in encoders.modules():
            place_at(module, offset)
        return encoders

    pipe.text_encoder_source.load = placed
    place_at(pipe.transformer, offset)
    return pipe(image, "semantic segmentation", category="dog", steps=2, guidance=2.0, resolution=64)


def main():
    image = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(0))
    first = answer(0, image)
    spread = 0.0
    for offset in range(4, 64, 4):
        moved = (answer(offset, image) - first).abs().max().item()
        spread = max(spread, moved)
        print(f"offset {offset:2d} bytes: max |answer − answer at offset 0| = {moved:.3g}")
    print(f"largest: {spread:.3g} (fp32, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})")


if __name__ == "__main__":
    main()
