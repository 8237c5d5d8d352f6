"""How much of the answer error a few-shot adapter removes on a tiny random DICEPTION: the figure behind
tests/test_diception_adapters.py::test_a_new_task_is_learned_from_48_examples, for the fixture model or a wider one.

    python bench/diception_adapter_learning.py                          # the fixture model (hidden 2 × 32)
    python bench/diception_adapter_learning.py --heads 4 --head-dim 64  # the same, 4× wider (hidden 256)

48 training pairs and 12 held-out pairs of the test's synthetic task ("invert the colours"); the adapter covers
the test's targets (attention projections, MLPs, adaLN, patch embedding, proj_out). Prints the held-out latent
error of one-step answers before and after, their ratio (the issue's bar: ≤ 0.5), the loss and the time.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_diception_adapters as learning  # noqa: E402
from tiny_models import build_diception_checkpoint  # noqa: E402

from models.diception import load_pipeline  # noqa: E402
from models.diception.adapter import TaskAdapter  # noqa: E402
from models.diception.finetune import train_adapter  # noqa: E402


def wider_model(root: Path, heads: int, head_dim: int):
    """The fixture's SD3 folder with a freshly initialised transformer of another width, and a DICEPTION
    checkpoint for it (random, in the official .pth layout)."""
    from diffusers import SD3Transformer2DModel

    shutil.copytree(learning.DICE / "tiny_sd3", root / "tiny_sd3")
    config = json.loads((root / "tiny_sd3" / "transformer" / "config.json").read_text())
    config.update(num_attention_heads=heads, attention_head_dim=head_dim, caption_projection_dim=heads * head_dim)
    torch.manual_seed(0)
    shutil.rmtree(root / "tiny_sd3" / "transformer")
    SD3Transformer2DModel.from_config(config).save_pretrained(root / "tiny_sd3" / "transformer")
    return root / "tiny_sd3", build_diception_checkpoint(root / "tiny_sd3", root / "diception_wide.pth")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, help="attention heads (default: the fixture model)")
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=learning.STEPS)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--rank", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    if args.heads:
        base, checkpoint = wider_model(work, args.heads, args.head_dim)
    else:
        base, checkpoint = learning.DICE / "tiny_sd3", learning.DICE / "diception_tiny.safetensors"
    pipe = load_pipeline(base, checkpoint, torch.float32, work / "cache")
    images, targets = learning.invert_task(48, 0)
    held_images, held_targets = learning.invert_task(12, 1)
    settings = learning.quick(steps=args.steps, learning_rate=args.learning_rate, rank=args.rank, batch_size=4, targets=learning.WIDE)
    start = time.perf_counter()
    pipeline, _, losses = train_adapter(pipe, images, targets, "invert", learning.PROMPT, settings)
    seconds = time.perf_counter() - start
    untrained = pipe.with_adapters([TaskAdapter("invert", learning.PROMPT, args.rank, float(args.rank), learning.WIDE, {})])
    before = learning.answer_error(untrained, held_images, held_targets)
    after = learning.answer_error(pipeline, held_images, held_targets)
    width = pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
    print(f"hidden {width}, {args.steps} steps, lr {args.learning_rate}, rank {args.rank}: held-out latent error "
          f"{before:.3f} → {after:.3f} ({after / before:.3f}×); loss {sum(losses[:20]) / 20:.3f} → "
          f"{sum(losses[-20:]) / 20:.3f}; {seconds:.0f} s training")


if __name__ == "__main__":
    main()
