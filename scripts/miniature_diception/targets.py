"""The answers DICEPTION is taught, as RGB images in [0, 1] (H, W, 3 float32), encoded exactly as the pack's decoders
(models/decoders) read them back:

- depth: disparity 1/depth min-max normalised per image, near = 1, in all three channels (``decode_depth``: channel
  mean; ``align_depth(space='disparity')`` recovers metric depth up to the scale and shift it fits);
- normal: ``(n + 1)/2`` of the camera-frame OpenGL normal (``decode_normals``);
- point and semantic segmentation: white on black (``decode_mask``: channel mean > 0.5);
- entity segmentation: each object in its ``entity_colour`` on black (``decode_instances``).
"""

import numpy as np

from models.diception.tasks import TASK_PROMPTS, task_prompt

from .world import CLASSES

TASKS = ("depth", "normal", "point segmentation", "entity segmentation", "semantic segmentation")
RECONSTRUCTION_PROMPT = "[[image2image]]"  # training only: the answer is the image itself (teaches carrying the image)
MIN_POINT_AREA = 40  # objects with fewer visible pixels are not prompted with a point


def depth_image(depth: np.ndarray) -> np.ndarray:
    disparity = 1.0 / depth
    lo, hi = disparity.min(), disparity.max()
    d = (disparity - lo) / max(hi - lo, 1e-12)
    return np.repeat(d[..., None], 3, -1).astype(np.float32)


def normal_image(normals: np.ndarray) -> np.ndarray:
    return np.clip((normals + 1) / 2, 0, 1).astype(np.float32)


def mask_image(mask: np.ndarray) -> np.ndarray:
    return np.repeat(mask[..., None].astype(np.float32), 3, -1)


def entity_image(scene) -> np.ndarray:
    palette = np.zeros((len(scene.objects) + 1, 3), np.float32)
    for o in scene.objects:
        palette[o["id"]] = np.array(o["entity_colour"]) / 255
    return palette[scene.instance]


def pointable(scene) -> list:
    """Objects big enough to be prompted with a point."""
    return [o for o in scene.objects if o["area"] >= MIN_POINT_AREA]


def point_in(scene, object_id: int, rng: np.random.Generator):
    """A pixel (x, y) of the object, away from its edge where it can be (the mask eroded by one pixel)."""
    from scipy import ndimage

    mask = scene.instance == object_id
    inner = ndimage.binary_erosion(mask)
    ys, xs = np.nonzero(inner if inner.sum() >= 4 else mask)
    i = int(rng.integers(len(ys)))
    return float(xs[i]), float(ys[i])


def prompts() -> dict:
    """Every prompt the miniature is taught: the task prompts and the semantic prompt of each class."""
    found = {t: TASK_PROMPTS[t] for t in TASKS if t != "semantic segmentation"}
    for cls, name in CLASSES.items():
        found[f"semantic:{cls}"] = task_prompt("semantic segmentation", name)
    found["image"] = RECONSTRUCTION_PROMPT
    return found
