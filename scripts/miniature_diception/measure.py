"""The miniature DICEPTION's quality on held-out scenes, through the pack's loader, engine and decoders.

Each task's answer is made by ``DicePipeline.__call__`` (one step, no guidance unless asked: the one-step answers
the miniature was mostly trained for) and read back by the pack's decoders (models/decoders):

- depth: ``decode_depth`` → disparity, aligned to the true depth by least squares in disparity space
  (``align_depth(space='disparity')``: scale and shift of the disparity, as the Marigold/GenPercept evaluation that
  DICEPTION follows does for disparity models), then AbsRel = mean |d − d*|/d* and δ1 = share of pixels with
  max(d/d*, d*/d) < 1.25;
- normal: ``decode_normals`` → mean angle to the true normal, in degrees;
- point segmentation: one point inside an object (its mask eroded), ``decode_mask`` → IoU with the object's mask;
- entity segmentation: ``decode_instances`` (default settings, given the scene's photo as RGB-to-Masks Decoder's
  ``photo`` input: touching regions with no edge between them in the photo are one instance) → for each true object
  of at least ``MIN_ENTITY`` pixels the best IoU of a decoded instance (0 when none), averaged;
- semantic segmentation: for each class, the class prompt, ``decode_mask``; IoU accumulated over the scenes
  (intersections / unions), averaged over the classes (mIoU).

Errors compared against the baselines: AbsRel, 1 − δ1, mean angle, 1 − IoU, 1 − mIoU.
"""

import tempfile
from pathlib import Path

import numpy as np
import torch

from models.decoders import MERGE_TOLERANCE, align_depth, decode_depth, decode_instances, decode_mask, decode_normals
from scripts.miniature_diception import targets
from scripts.miniature_diception.examples import SIZE
from scripts.miniature_diception.files import BASE, CHECKPOINT, write_checkpoint
from scripts.miniature_diception.train import build_point_encoder
from scripts.miniature_diception.world import CLASSES, HELD_OUT_SEEDS, TRAIN_SEEDS, scene

MIN_ENTITY = 64  # decode_instances' default min_area: smaller objects cannot be found by the decoder
ERRORS = ("depth AbsRel", "depth 1-δ1", "normal mean angle (°)", "point seg 1-IoU", "entity 1-IoU", "semantic 1-mIoU")


def load_miniature(cache, checkpoint=None, base=None):
    """The miniature ``train transformer`` wrote (or ``checkpoint`` on ``base``) through the pack's loader, as the nodes load it."""
    from models.diception import load_pipeline

    return load_pipeline(base or BASE, checkpoint or CHECKPOINT, torch.float32, cache)


def load_untrained(cache, folder, base=None):
    """The same architecture at its random initialisation: the base folder's transformer (the miniature's starting
    point) with the initial point encoder, as a DICEPTION checkpoint in ``folder``."""
    from diffusers import SD3Transformer2DModel

    base = base or BASE
    transformer = SD3Transformer2DModel.from_pretrained(base, subfolder="transformer", torch_dtype=torch.float32)
    path = Path(folder) / "untrained.safetensors"
    write_checkpoint(transformer, build_point_encoder(transformer.config.caption_projection_dim), path)
    return load_miniature(cache, path, base)


def held_out(count: int):
    return [scene(seed, SIZE) for seed in HELD_OUT_SEEDS[:count]]


def points_for(scenes):
    """One (object id, point) per scene: the largest pointable object, a point from the scene's own generator."""
    chosen = []
    for s in scenes:
        objects = sorted(targets.pointable(s), key=lambda o: -o["area"])
        rng = np.random.default_rng(s.seed + 5)
        o = objects[int(rng.integers(min(2, len(objects))))]
        chosen.append((o["id"], targets.point_in(s, o["id"], rng)))
    return chosen


class Answerer:
    """Answers of a pipeline (one step, no guidance by default), or of a constant answer per task."""

    def __init__(self, pipeline=None, constants=None, steps=1, guidance=1.0):
        self.pipeline, self.constants, self.steps, self.guidance = pipeline, constants, steps, guidance

    def __call__(self, images, task, category="", points=()):
        if self.constants is not None:
            key = f"semantic:{category}" if task == "semantic segmentation" else task
            return self.constants[key][None].expand(len(images), -1, -1, -1)
        return self.pipeline(images, task, category=category, points=points, steps=self.steps, guidance=self.guidance,
                             resolution=SIZE, batch_size=8)


def rgb_batch(scenes):
    return torch.from_numpy(np.stack([s.rgb for s in scenes])).float() / 255


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def evaluate(answer, scenes, merge_tolerance: float = MERGE_TOLERANCE, photo: bool = True) -> dict:
    """Every error of ``answer`` on ``scenes`` → {name: value} (plus per-scene lists under ``per_scene``); entity answers
    decoded with ``merge_tolerance`` and, with ``photo``, the scene's image (``decode_instances``)."""
    images = rgb_batch(scenes)
    out, per = {}, {}
    disparity = decode_depth(answer(images, "depth"))
    absrel, delta = [], []
    for d, s in zip(disparity, scenes):
        depth, _, _ = align_depth(d, torch.from_numpy(s.depth), space="disparity")
        gt = torch.from_numpy(s.depth)
        absrel.append(float(((depth - gt).abs() / gt).mean()))
        delta.append(float((torch.maximum(depth / gt, gt / depth) < 1.25).float().mean()))
    normals = decode_normals(answer(images, "normal"))
    angles = [float(torch.rad2deg(torch.arccos((n * torch.from_numpy(s.normals)).sum(-1).clamp(-1, 1))).mean())
              for n, s in zip(normals, scenes)]
    chosen = points_for(scenes)
    masks = decode_mask(answer(images, "point segmentation", points=[[p] for _, p in chosen])).bool().numpy()
    point_iou = [iou(m, s.instance == oid) for m, (oid, _), s in zip(masks, chosen, scenes)]
    entity_iou = entity_scores(answer(images, "entity segmentation"), scenes, merge_tolerance, photo)
    class_iou = {}
    for cls, name in CLASSES.items():
        m = decode_mask(answer(images, "semantic segmentation", category=name)).bool().numpy()
        truth = np.stack([s.semantic == cls for s in scenes])
        union = (m | truth).sum()
        class_iou[name] = float((m & truth).sum() / union) if union else 1.0
    per.update({"depth AbsRel": absrel, "depth δ1": delta, "normal mean angle (°)": angles, "point seg IoU": point_iou,
                "entity IoU": entity_iou})
    out = {"depth AbsRel": np.mean(absrel), "depth δ1": np.mean(delta), "normal mean angle (°)": np.mean(angles),
           "point seg IoU": np.mean(point_iou), "entity IoU": np.mean(entity_iou), "semantic mIoU": np.mean(list(class_iou.values()))}
    out = {k: float(v) for k, v in out.items()}
    out["semantic IoU per class"] = class_iou
    out["per_scene"] = per
    return out


def entity_scores(entities, scenes, merge_tolerance: float = MERGE_TOLERANCE, photo: bool = True) -> list:
    """Per scene: for each true object of at least ``MIN_ENTITY`` pixels the best IoU of an instance ``decode_instances``
    finds in the scene's entity answer (given the scene's image with ``photo``), averaged."""
    out = []
    for e, s, image in zip(entities, scenes, rgb_batch(scenes)):
        found = decode_instances(e[None], merge_tolerance=merge_tolerance, photo=image if photo else None).numpy()
        scores = [max([iou(f, s.instance == o["id"]) for f in found], default=0.0)
                  for o in s.objects if o["area"] >= MIN_ENTITY]
        out.append(float(np.mean(scores)) if scores else 1.0)
    return out


def evaluate_constant(scenes, merge_tolerance: float = MERGE_TOLERANCE, photo: bool = True) -> dict:
    """``evaluate`` of the best constant answer (``constant_answers``); its entity IoU is the better of its decodings
    with and without the photo (the photo's merging joins the constant's blobs: 0.240 against 0.275 on 128 scenes)."""
    answer = Answerer(constants=constant_answers())
    figures = evaluate(answer, scenes, merge_tolerance, photo)
    if photo:
        blind = entity_scores(answer(rgb_batch(scenes), "entity segmentation"), scenes, merge_tolerance, photo=False)
        figures["entity IoU"] = max(figures["entity IoU"], float(np.mean(blind)))
    return figures


def errors(figures: dict) -> dict:
    return {
        "depth AbsRel": figures["depth AbsRel"], "depth 1-δ1": 1 - figures["depth δ1"],
        "normal mean angle (°)": figures["normal mean angle (°)"], "point seg 1-IoU": 1 - figures["point seg IoU"],
        "entity 1-IoU": 1 - figures["entity IoU"], "semantic 1-mIoU": 1 - figures["semantic mIoU"],
    }


def constant_answers(count: int = 200, thresholds=(0.1, 0.2, 0.3, 0.4, 0.5)) -> dict:
    """The best constant answer per task: the per-pixel mean of the training targets (a mask task's mean is then
    pushed to 0/1 at the threshold that gives the training scenes the best IoU)."""
    scenes = [scene(seed, SIZE) for seed in TRAIN_SEEDS[-count:]]
    mean = lambda images: torch.from_numpy(np.mean(images, 0)).float()  # noqa: E731
    constants = {
        "depth": mean([targets.depth_image(s.depth) for s in scenes]),
        "normal": mean([targets.normal_image(s.normals) for s in scenes]),
        "entity segmentation": mean([targets.entity_image(s) for s in scenes]),
    }
    masks = {"point segmentation": [s.instance > 0 for s in scenes]}  # a point's object: somewhere on the objects
    masks.update({f"semantic:{name}": [s.semantic == cls for s in scenes] for cls, name in CLASSES.items()})
    for key, truth in masks.items():
        average = np.mean(truth, 0)
        best = max(thresholds, key=lambda t: np.mean([iou(average > t, m) for m in truth]) if key == "point segmentation"
                   else iou(np.stack([average > t] * len(truth)), np.stack(truth)))
        constants[key] = torch.from_numpy(np.repeat((average > best)[..., None], 3, -1)).float()
    return constants


def vae_psnr(pipeline, scenes) -> dict:
    """Reconstruction PSNR (dB) of the VAE through the pipeline's encode/decode, per kind of image."""
    from models.diception.pipeline import preprocess

    kinds = {"rgb": [s.rgb.astype(np.float32) / 255 for s in scenes], "depth": [targets.depth_image(s.depth) for s in scenes],
             "normal": [targets.normal_image(s.normals) for s in scenes], "entity": [targets.entity_image(s) for s in scenes],
             "mask": [targets.mask_image(s.instance > 0) for s in scenes]}
    out = {}
    for kind, images in kinds.items():
        values = []
        for image in images:
            x = torch.from_numpy(image)[None]
            recon = pipeline.decode(pipeline.encode_image(preprocess(x, SIZE)))[0].permute(1, 2, 0)
            mse = float(((recon - x[0]) ** 2).mean())
            values.append(10 * np.log10(1 / max(mse, 1e-10)))
        out[kind] = float(np.mean(values))
    return out


def temporary_cache():
    return Path(tempfile.mkdtemp(prefix="diception-miniature-prompts."))
