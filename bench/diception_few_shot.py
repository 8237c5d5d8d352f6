"""Few-shot on the miniature DICEPTION: a task it was never taught, learned from 48 examples.

    python bench/diception_few_shot.py                       # node defaults vs full fine-tune vs the mean target
    python bench/diception_few_shot.py --recipe              # + each recipe point on/off, learning rate and rank
    python bench/diception_few_shot.py --base B --checkpoint C   # another miniature (e.g. a training snapshot)

The new task, "highlight the red objects" (prompt ``[[image2highlight]]``): white where an object's surface colour is
red, black elsewhere, computed exactly from the world's ``objects[].colour_name`` and ``instance``. Scenes with at
least one red object; 48 training scenes (train seeds from ``FIRST_TRAIN``), 12 held out (held-out seeds from
``FIRST_HELD_OUT``: never seen in pretraining). The miniature was taught depth, normals and segmentation, never
colour.

Every run trains with the same examples, steps and seed; the held-out error is the mean |answer − target| of the
decoded pixels (the miniature's VAE is trained, so pixels say what the transformer answered), for one-step answers
(steps 1, guidance 1: the miniature's answers as taught) and at Perceive Task's defaults (28 steps, guidance 2).
Baselines from the same run: the mean training target (one image, no model) and the miniature with the untrained
adapter. Rows:

- node defaults: ``TrainingSettings()`` as Train DICEPTION Adapter gives them, at the miniature's resolution;
- full fine-tune: every transformer parameter, same steps, seed and learning rate (``full_fine_tune``).
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.diception.adapter import TaskAdapter  # noqa: E402
from models.diception.finetune import TrainingSettings, train_adapter  # noqa: E402

TASK, PROMPT = "highlight", "[[image2highlight]]"
SIZE = 128
FIRST_TRAIN = 700_000  # train seeds from here (the pretraining draws its scenes from the start of TRAIN_SEEDS)
FIRST_HELD_OUT = 1_000_256  # the second half of HELD_OUT_SEEDS (the quality table uses the first)
DEFAULT_STEPS, DEFAULT_GUIDANCE = 28, 2.0  # Perceive Task's defaults
ANSWER_SEED = 7
LOGGED_STEPS = 5  # the first losses tests/test_diception_few_shot.py reproduces


def red_objects(scene) -> np.ndarray:
    """The task's exact answer: (H, W, 3) float32, 1 on the red objects' pixels, 0 elsewhere."""
    ids = [o["id"] for o in scene.objects if o["colour_name"] == "red"]
    return np.repeat(np.isin(scene.instance, ids)[..., None], 3, -1).astype(np.float32)


def examples(count: int, first_seed: int):
    """``count`` scenes with at least one red object, from ``first_seed`` on → (images, targets), (N, H, W, 3) in [0, 1]."""
    from scripts.miniature_diception.world import scene

    images, targets, seed = [], [], first_seed
    while len(images) < count:
        s = scene(seed, SIZE)
        seed += 1
        target = red_objects(s)
        if target.any():
            images.append(s.rgb.astype(np.float32) / 255)
            targets.append(target)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))


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
    parser.add_argument("--full-lr", type=float, help="full fine-tune's learning rate (default: the node's)")
    parser.add_argument("--recipe", action="store_true", help="also each recipe point switched, the learning rate and rank")
    parser.add_argument("--only", nargs="*", help="recipe rows to run (names as printed)")
    parser.add_argument("--save", help="a folder: the node-defaults adapter of the first seed and its first losses go there (tests/data)")
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
            "prompt_dropout 0": {"prompt_dropout": 0.0},
            "learning_rate 3e-5": {"learning_rate": 3e-5},
            "learning_rate 3e-4": {"learning_rate": 3e-4},
            "learning_rate 1e-3": {"learning_rate": 1e-3},
            "rank 8": {"rank": 8},
            "rank 64": {"rank": 64},
            "target attention + MLP": {"targets": __import__("models.diception.adapter", fromlist=["x"]).TARGET_PRESETS["attention + MLP"]},
        })
        if args.only:
            runs = {k: v for k, v in runs.items() if k in args.only}
    for seed in args.seeds:
        for name, change in runs.items():
            settings = node_defaults(seed=seed, **steps, **change)
            pipeline, adapter, losses, seconds = train(pipe, train_set, settings)
            if args.save and name == "node defaults" and seed == args.seeds[0]:
                from models.diception.adapter_file import adapter_bytes

                folder = Path(args.save)
                (folder / "few_shot_highlight.safetensors").write_bytes(adapter_bytes(adapter))
                log = {"settings": {k: v for k, v in vars(node_defaults(steps=LOGGED_STEPS)).items() if k != "targets"},
                       "losses": losses[:LOGGED_STEPS]}
                (folder / "few_shot_losses.json").write_text(json.dumps(log, indent=1) + "\n")
            row(f"{name}, seed {seed}", errors(pipeline, held), mean,
                f"loss {np.mean(losses[:20]):.3f} → {np.mean(losses[-20:]):.3f}, {seconds:.0f} s")
        if not args.recipe or not args.only:
            full = load(args.base, args.checkpoint)  # trained in place: its own copy
            lr = {"learning_rate": args.full_lr} if args.full_lr else {}
            pipeline, _, losses, seconds = train(full, train_set, node_defaults(seed=seed, full_fine_tune=True, **steps, **lr))
            row(f"full fine-tune, seed {seed}", errors(pipeline, held), mean,
                f"loss {np.mean(losses[:20]):.3f} → {np.mean(losses[-20:]):.3f}, {seconds:.0f} s")


if __name__ == "__main__":
    main()
