"""Few-shot on the miniature DICEPTION: a task it was never taught, learned from 48 examples.

    python bench/diception_few_shot.py                       # node defaults vs full fine-tune vs the mean target
    python bench/diception_few_shot.py --recipe              # + each recipe point on/off, learning rate and rank
    python bench/diception_few_shot.py --seeds 5 6 --full-lr 1e-4 --full-dropout 0 0.1   # the full fine-tune's variants
    python bench/diception_few_shot.py --base B --checkpoint C   # another miniature (e.g. a training snapshot)

The new task (scripts/miniature_diception/new_task.py), "highlight the red objects": 48 training scenes, 12 held out
(held-out seeds never seen in pretraining). The miniature was taught depth, normals and segmentation, never colour.

Every run trains with the same examples, steps and seed; the held-out error is the mean |answer − target| of the
decoded pixels (the miniature's VAE is trained, so pixels say what the transformer answered), for one-step answers
(steps 1, guidance 1: the miniature's answers as taught) and at Perceive Task's defaults (28 steps, guidance 2).
Baselines from the same run: the mean training target (one image, no model) and the miniature with the untrained
adapter. Rows:

- node defaults: ``TrainingSettings()`` as Train DICEPTION Adapter gives them, at the miniature's resolution (rank 8
  on the attention projections, the feed-forward layers and the adaLN modulation; the learning rate for the model's
  width: 1.2e-3 here; no prompt dropout);
- full fine-tune: every transformer parameter and no adapter, same steps and seed (``full_fine_tune``), at the node's
  learning rate and at diffusers' 1e-4 (the better of the two for a full fine-tune on the miniature).
"""

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.diception.adapter import TARGET_PRESETS, TaskAdapter  # noqa: E402
from models.diception.finetune import TrainingSettings, train_adapter  # noqa: E402
from scripts.miniature_diception.new_task import FIRST_HELD_OUT, FIRST_TRAIN, PROMPT, SIZE, TASK, examples  # noqa: E402

DEFAULT_STEPS, DEFAULT_GUIDANCE = 28, 2.0  # Perceive Task's defaults
ANSWER_SEED = 7


def load(base=None, checkpoint=None, cache=None):
    from scripts.miniature_diception.measure import load_miniature

    return load_miniature(cache or tempfile.mkdtemp(), checkpoint, base)


def node_defaults(**changes) -> TrainingSettings:
    """What Train DICEPTION Adapter does with its defaults, at the miniature's resolution."""
    return replace(TrainingSettings(), resolution=SIZE, **changes)


def answer_error(pipeline, images, targets, steps: int, guidance: float) -> float:
    answers = pipeline(images, TASK, steps=steps, guidance=guidance, seed=ANSWER_SEED, resolution=SIZE)
    return (answers - targets).abs().mean().item()


def errors(pipeline, held) -> dict:
    return {"1 step": answer_error(pipeline, *held, 1, 1.0),
            f"{DEFAULT_STEPS} steps, guidance {DEFAULT_GUIDANCE:g}": answer_error(pipeline, *held, DEFAULT_STEPS, DEFAULT_GUIDANCE)}


def train(pipe, train_set, settings):
    start = time.perf_counter()
    pipeline, adapter, losses = train_adapter(pipe, *train_set, TASK, PROMPT, settings)
    return pipeline, adapter, losses, time.perf_counter() - start


def untrained(pipe, settings=None):
    settings = settings or node_defaults()
    return pipe.with_adapters([TaskAdapter(TASK, PROMPT, settings.rank, float(settings.rank), settings.targets, {})])


def row(name, figures, mean, extra=""):
    cells = " | ".join(f"{v:.4f} ({v / mean[k]:.2f}×)" for k, v in figures.items())
    print(f"| {name} | {cells} | {extra}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the miniature's SD3 folder (default: the one train.py wrote)")
    parser.add_argument("--checkpoint", help="the miniature's DICEPTION checkpoint")
    parser.add_argument("--steps", type=int, help="training steps (default: the node's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--full-lr", type=float, nargs="+", help="full fine-tune's learning rates (default: the node's, and 1e-4)")
    parser.add_argument("--full-dropout", type=float, nargs="+", help="full fine-tune's prompt dropouts (default: the node's)")
    parser.add_argument("--recipe", action="store_true", help="also each recipe point switched, the learning rate and rank")
    parser.add_argument("--only", nargs="*", help="recipe rows to run (names as printed)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_set, held = examples(48, FIRST_TRAIN), examples(12, FIRST_HELD_OUT)
    steps = {"steps": args.steps} if args.steps else {}
    mean_target = train_set[1].mean(0, keepdim=True)
    mean = {k: (mean_target - held[1]).abs().mean().item() for k in ("1 step", f"{DEFAULT_STEPS} steps, guidance {DEFAULT_GUIDANCE:g}")}
    pipe = load(args.base, args.checkpoint)
    print(f"held-out mean |answer − target| (× the mean-target predictor's); 48 train / 12 held-out scenes, {SIZE}²")
    print("| run | " + " | ".join(mean) + " | |\n|---|---|---|---|")
    row("mean training target (no model)", mean, mean)
    row("miniature, untrained adapter", errors(untrained(pipe), held), mean)
    runs = {"node defaults": {}}
    if args.recipe:
        runs.update({
            "precondition off (plain velocity MSE)": {"precondition": False},
            "one_step_fraction 0": {"one_step_fraction": 0.0},
            "one_step_fraction 0.5": {"one_step_fraction": 0.5},
            "max_grad_norm 0 (no clipping)": {"max_grad_norm": 0.0},
            "prompt_dropout 0.1 (the earlier default)": {"prompt_dropout": 0.1},
            "learning_rate 1e-4 (diffusers' SD3 LoRA rate)": {"learning_rate": 1e-4},
            "learning_rate 3e-4": {"learning_rate": 3e-4},
            "learning_rate 3e-3": {"learning_rate": 3e-3},
            "rank 16": {"rank": 16},
            "rank 32": {"rank": 32},
            "target attention": {"targets": TARGET_PRESETS["attention"]},
            "target attention + adaLN": {"targets": TARGET_PRESETS["attention + adaLN"]},
            "target attention + MLP (the earlier default)": {"targets": TARGET_PRESETS["attention + MLP"]},
            "target attention, learning_rate 1e-4 (the earlier defaults, rank 32)": {"targets": TARGET_PRESETS["attention"], "learning_rate": 1e-4, "rank": 32},
        })
        if args.only:
            runs = {k: v for k, v in runs.items() if k in args.only}
    for seed in args.seeds:
        for name, change in runs.items():
            settings = node_defaults(seed=seed, **steps, **change)
            pipeline, adapter, losses, seconds = train(pipe, train_set, settings)
            row(f"{name}, seed {seed}", errors(pipeline, held), mean,
                f"lr {adapter.settings['learning_rate']:.2g}, loss {np.mean(losses[:20]):.3f} → {np.mean(losses[-20:]):.3f}, {seconds:.0f} s")
        if not args.recipe or not args.only:
            dropouts = args.full_dropout or [node_defaults().prompt_dropout]
            for rate in (args.full_lr or [0.0, 1e-4]):  # the node's rate (0: for the width), diffusers' SD3 rate
                for dropout in dropouts:
                    full = load(args.base, args.checkpoint)  # trained in place: its own copy
                    settings = node_defaults(seed=seed, full_fine_tune=True, learning_rate=rate, prompt_dropout=dropout, **steps)
                    pipeline, adapter, losses, seconds = train(full, train_set, settings)
                    row(f"full fine-tune, learning_rate {adapter.settings['learning_rate']:.2g}, prompt_dropout {dropout:g}, seed {seed}",
                        errors(pipeline, held), mean, f"loss {np.mean(losses[:20]):.3f} → {np.mean(losses[-20:]):.3f}, {seconds:.0f} s")


if __name__ == "__main__":
    main()
