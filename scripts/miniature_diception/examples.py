"""The miniature DICEPTION's training examples (train.py): each world scene's condition image and the answer of
every task, encoded once through the pipeline's own VAE (``finetune.example_latents``), and the held-out check the
training log records (one-step latent error on 16 held-out scenes, as a ratio of the mean training answer's).
"""

import time

import numpy as np
import torch

from models.diception import finetune
from models.diception.pipeline import point_slots
from models.diception.transformer import diception_forward

from . import targets
from .world import CLASSES, HELD_OUT_SEEDS, scene

SIZE = 128  # the miniature's images (128², 16 × 16 latents)


def scene_examples(seed: int):
    """One training scene → its condition image, the answers of each task, and per pointable object a point."""
    s = scene(seed, SIZE)
    rng = np.random.default_rng(seed + 77)
    answers = {"depth": targets.depth_image(s.depth), "normal": targets.normal_image(s.normals),
               "entity segmentation": targets.entity_image(s)}
    for cls in CLASSES:
        answers[f"semantic:{cls}"] = targets.mask_image(s.semantic == cls)
    points = []
    for o in targets.pointable(s)[:4]:
        answers[f"point:{o['id']}"] = targets.mask_image(s.instance == o["id"])
        points.append((o["id"], [targets.point_in(s, o["id"], rng) for _ in range(4)]))
    return s.rgb.astype(np.float32) / 255, answers, points


class Encoded:
    """The latents of the training scenes (``finetune.example_latents``: the pipeline's own VAE encoding), each scene
    encoded on first use: the full run encodes them all up front, the reproduction test only those it draws."""

    def __init__(self, pipeline, seeds):
        self.pipeline, self.seeds, self.items = pipeline, list(seeds), {}

    def __len__(self):
        return len(self.seeds)

    def __getitem__(self, i: int):
        if i not in self.items:
            rgb, answers, points = scene_examples(self.seeds[i])
            names = list(answers)
            images = [torch.from_numpy(rgb)] + [torch.from_numpy(answers[k]) for k in names]
            latents = finetune.example_latents(self.pipeline, images, SIZE)
            answers = dict(zip(names, latents[1:]))
            answers["image"] = latents[0]  # the auxiliary reconstruction task's answer: the condition image itself
            self.items[i] = (latents[0], answers, points)
        return self.items[i]

    def encode_all(self, log=print):
        t0 = time.time()
        for i in range(len(self)):
            self[i]
            if (i + 1) % 200 == 0:
                log(f"encoded {i + 1}/{len(self)} scenes ({time.time() - t0:.0f} s)")
        return self


class HeldOutCheck:
    """16 held-out scenes' latents and each checked task's mean training answer (200 training scenes)."""

    TASKS = ("depth", "normal", "entity segmentation", "image")

    def __init__(self, pipeline, data):
        held = Encoded(pipeline, HELD_OUT_SEEDS[:16])
        self.items = [held[i] for i in range(len(held))]
        self.means = {t: torch.stack([data[i][1][t] for i in range(min(200, len(data)))]).mean(0) for t in self.TASKS}


@torch.no_grad()
def held_out_check(transformer, point_encoder, check: HeldOutCheck, embeds) -> dict:
    """One-step answers (σ = 1) on held-out scenes: latent squared error as a ratio of the mean training answer's,
    per task (< 1: the answer depends on the image usefully; 1: as good as answering the mean)."""
    transformer.eval()
    g = torch.Generator().manual_seed(123)
    cond = torch.stack([c for c, _, _ in check.items])
    slots = [point_slots([], SIZE, SIZE) for _ in check.items]
    tokens = point_encoder(torch.cat([c for c, _ in slots]), torch.cat([l for _, l in slots]))
    out = {}
    for task in check.TASKS:
        z = torch.stack([answers[task] for _, answers, _ in check.items])
        noise = torch.randn(z.shape, generator=g)
        sigma = torch.ones(len(z))
        text, pooled = embeds[task]
        v = diception_forward(transformer, noise, cond, text.expand(len(z), -1, -1), pooled.expand(len(z), -1), tokens, sigma * 1000)
        out[task] = round(float(((noise - v - z) ** 2).mean() / ((check.means[task][None] - z) ** 2).mean()), 3)
    transformer.train()
    return out
