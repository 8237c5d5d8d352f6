"""A task the miniature DICEPTION was never taught, for few-shot measurements (bench/diception_few_shot.py) and the
CI check that Train DICEPTION Adapter's defaults learn it (tests/test_diception_miniature.py).

"Highlight the red objects" (prompt ``[[image2highlight]]``): white where an object's surface colour is red, black
elsewhere, computed exactly from the world's ``objects[].colour_name`` and ``instance``. Scenes with at least one red
object; training examples from train seeds ``FIRST_TRAIN`` on, held-out ones from held-out seeds ``FIRST_HELD_OUT``
on (never drawn in pretraining). The miniature was taught depth, normals and segmentation, never colour.
"""

import numpy as np
import torch

from .world import scene

TASK, PROMPT = "highlight", "[[image2highlight]]"
SIZE = 128
FIRST_TRAIN = 700_000  # train seeds from here (the pretraining draws its scenes from the start of TRAIN_SEEDS)
FIRST_HELD_OUT = 1_000_256  # the second half of HELD_OUT_SEEDS (the quality table uses the first)


def red_objects(world_scene) -> np.ndarray:
    """The task's exact answer: (H, W, 3) float32, 1 on the red objects' pixels, 0 elsewhere."""
    ids = [o["id"] for o in world_scene.objects if o["colour_name"] == "red"]
    return np.repeat(np.isin(world_scene.instance, ids)[..., None], 3, -1).astype(np.float32)


def examples(count: int, first_seed: int):
    """``count`` scenes with at least one red object, from ``first_seed`` on → (images, targets), (N, H, W, 3) in [0, 1]."""
    images, targets, seed = [], [], first_seed
    while len(images) < count:
        s = scene(seed, SIZE)
        seed += 1
        target = red_objects(s)
        if target.any():
            images.append(s.rgb.astype(np.float32) / 255)
            targets.append(target)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))
