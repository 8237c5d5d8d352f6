"""Measurements on the miniature SAM and the synthetic PerSeg (``world.perseg``), each with a trivial baseline.

- ``sam_quality``: the miniature SAM itself on held-out objects: IoU from one ground-truth point (the point
  farthest from the object's boundary, as SAM's paper evaluates; the output SAM scores highest, and the best of
  its three) and from the object's box; baseline: the box itself as the mask.
- ``persam_table``: PerSAM / PerSAM-F mask IoU on held-out photos (one reference; several; with a negative;
  the DreamBooth training mask; the video carry), point-on-subject rate and distractor picks. The mask baseline
  is the BEST CONSTANT mask (the centred square whose mean IoU over the same photos is highest, chosen knowing
  the answers) and, for points, a uniformly random point (its rate is the subject's share of the image).

Used by bench/persam_quality.py (the table) and tests/test_persam_miniature.py (its orderings).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from scripts.miniature_sam import world

WEIGHTS = Path(__file__).resolve().parent / "sam_miniature.safetensors"


def load_miniature(path=WEIGHTS):
    from models.persam import load_sam

    return load_sam(path)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def centre_point(mask: np.ndarray):
    """(x, y) of the mask pixel farthest from its boundary."""
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), mask.shape)
    return float(x), float(y)


def box_of(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)


def box_mask(box, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    out[y0 : y1 + 1, x0 : x1 + 1] = True
    return out


@torch.no_grad()
def sam_quality(sam, scenes: int = 60, min_pixels: int = 100, first: int = 0) -> dict:
    """Mean IoU on the objects of held-out scenes ``first`` … ``first + scenes - 1`` (whole objects, ≥ ``min_pixels``
    visible)."""
    from models.persam import encode_image
    from models.persam.predict import predict

    point, oracle, box, box_baseline = [], [], [], []
    for index in range(first, first + scenes):
        scene = world.heldout_scene(index)
        features = encode_image(sam, scene.image)
        for painted in scene.objects:
            mask = painted.whole
            if mask.sum() < min_pixels:
                continue
            x, y = centre_point(mask)
            found = predict(sam, features, torch.tensor([[x, y]]), torch.tensor([1]), multimask=True)
            masks = found.masks.cpu().numpy()
            point.append(iou(masks[found.best()], mask))
            oracle.append(max(iou(m, mask) for m in masks))
            b = box_of(mask)
            boxed = predict(sam, features, None, None, box=torch.as_tensor(b), multimask=False)
            box.append(iou(boxed.mask(0).cpu().numpy(), mask))
            box_baseline.append(iou(box_mask(b, mask.shape), mask))
    return {"objects": len(point), "point": float(np.mean(point)), "point_oracle": float(np.mean(oracle)),
            "box": float(np.mean(box)), "box_as_mask": float(np.mean(box_baseline))}


# ---- PerSAM on the synthetic PerSeg -------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One segmented photo."""

    iou: float
    on_subject: bool  # the positive point lands on the subject
    distractor_pick: bool  # the positive point lands on the look-alike
    mask_on_distractor: bool  # more of the mask lies on the look-alike than on the subject


def outcome(mask: np.ndarray, point, photo: world.Photo) -> Outcome:
    x, y = (int(v) for v in point)
    return Outcome(iou(mask, photo.mask), bool(photo.mask[y, x]), bool(photo.distractor[y, x]),
                   bool((mask & photo.distractor).sum() > (mask & photo.mask).sum()))


def reference_of(sam, photos, negatives=(), fine_tune=False, iterations=1000):
    from models.persam import make_reference_set

    return make_reference_set(sam, [p.image for p in photos], [p.mask.astype(np.float32) for p in photos],
                              [p.image for p in negatives], [p.distractor.astype(np.float32) for p in negatives],
                              fine_tune=fine_tune, iterations=iterations)


@torch.no_grad()
def segment_photos(sam, reference, photos, guidance=None) -> list:
    from models.persam import encode_images
    from models.persam.cascade import GUIDANCE, persam_f_segment, persam_segment

    found = []
    for photo, features in zip(photos, encode_images(sam, [p.image for p in photos])):
        if reference.mode == "persam_f":
            result = persam_f_segment(sam, features, reference.embedding, reference.weights, negatives=reference.negatives)
        else:
            result = persam_segment(sam, features, reference.embedding, negatives=reference.negatives,
                                    guidance=guidance or GUIDANCE)
        found.append((result.mask.cpu().numpy(), result.points[0].tolist()))
    return found


def best_constant(photos) -> float:
    """The best constant mask's mean IoU: the centred square (side 8, 16, … px) best on these photos."""
    height, width = photos[0].mask.shape
    best = 0.0
    for side in range(8, min(height, width) + 1, 8):
        square = box_mask(((width - side) / 2, (height - side) / 2, (width + side) / 2 - 1, (height + side) / 2 - 1),
                          (height, width))
        best = max(best, float(np.mean([iou(square, p.mask) for p in photos])))
    return best


@dataclass
class Row:
    name: str
    method: str
    photos: int
    mean_iou: float
    on_subject: float
    distractor_picks: int
    mask_on_distractor: int
    baseline_iou: float  # best constant mask
    baseline_on_subject: float  # a random point
    iou_on_subject: float  # mean IoU over the photos whose point landed on the subject (nan when none did)

    def line(self) -> str:
        return (f"| {self.name} | {self.method} | {self.photos} | {self.mean_iou:.3f} | {self.baseline_iou:.3f} | "
                f"{self.on_subject:.2f} | {self.baseline_on_subject:.2f} | {self.iou_on_subject:.3f} | "
                f"{self.distractor_picks} | {self.mask_on_distractor} |")


HEADER = ("| photos | method | n | mean IoU | best constant | point on subject | random point | IoU when the point is on "
          "the subject | distractor picks (point) | distractor picks (mask) |\n|---|---|---|---|---|---|---|---|---|---|")


def row(name, method, outcomes, photos) -> Row:
    return Row(name, method, len(outcomes), float(np.mean([o.iou for o in outcomes])),
               float(np.mean([o.on_subject for o in outcomes])), sum(o.distractor_pick for o in outcomes),
               sum(o.mask_on_distractor for o in outcomes), best_constant(photos),
               float(np.mean([p.mask.mean() for p in photos])),
               float(np.mean([o.iou for o in outcomes if o.on_subject])) if any(o.on_subject for o in outcomes) else float("nan"))


def same_look_tests(subject):
    """Test photos showing the reference's (photo 0's) look."""
    return [p for p in subject.photos[1:] if p.look == 0]


def persam_table(sam, subjects, iterations: int = 1000, video: bool = True) -> dict:
    """name → Row (see HEADER). Every figure on photos the references never include. ``video=False`` leaves out
    the video carry (the slowest part: the tests' orderings do not need it)."""
    from models.dreambooth.masks import training_mask
    from models.persam.frames import segment_frames

    runs = {key: ([], []) for key in (
        "one/persam", "one/persam_f", "parts/persam", "parts/persam_f", "nonparts/persam", "nonparts/persam_f",
        "looks/one", "looks/two_best", "looks/two_mean", "looks/two_f", "looks/one_f",
        "negative/without", "negative/with", "negative/without_f", "negative/with_f",
        "dreambooth/persam", "video/carried", "video/each")}

    def add(key, masks_points, photos):
        runs[key][0].extend(outcome(m, pt, p) for (m, pt), p in zip(masks_points, photos))
        runs[key][1].extend(photos)

    dreambooth = []
    for subject in subjects:
        first = subject.photos[0]
        tests = same_look_tests(subject)
        persam = reference_of(sam, [first])
        persam_f = reference_of(sam, [first], fine_tune=True, iterations=iterations)
        plain, fitted = segment_photos(sam, persam, tests), segment_photos(sam, persam_f, tests)
        add("one/persam", plain, tests)
        add("one/persam_f", fitted, tests)
        group = "parts" if subject.has_parts else "nonparts"
        add(f"{group}/persam", plain, tests)
        add(f"{group}/persam_f", fitted, tests)
        for (mask, _), photo in zip(plain, tests):
            grown = training_mask(torch.from_numpy(mask.astype(np.float32)))[0].numpy() > 0.5
            dreambooth.append((iou(grown, photo.mask), float((grown & photo.mask).sum() / photo.mask.sum())))
        add("dreambooth/persam", [(training_mask(torch.from_numpy(m.astype(np.float32)))[0].numpy() > 0.5, pt)
                                  for m, pt in plain], tests)
        if subject.second_look is not None:  # references: photo 0 (look 0) and photo 4 (look 1)
            second = subject.photos[world.PHOTOS // 2]
            both = [p for i, p in enumerate(subject.photos) if i not in (0, world.PHOTOS // 2)]
            add("looks/one", segment_photos(sam, persam, both), both)
            add("looks/one_f", segment_photos(sam, persam_f, both), both)
            two = reference_of(sam, [first, second])
            add("looks/two_best", segment_photos(sam, two, both, "best"), both)
            add("looks/two_mean", segment_photos(sam, two, both, "mean"), both)
            two_f = reference_of(sam, [first, second], fine_tune=True, iterations=iterations)
            add("looks/two_f", segment_photos(sam, two_f, both), both)
        # a negative: the look-alike of photo 2; tested on the other look-alike photos of the reference's look
        source = subject.photos[2]
        targets = [subject.photos[i] for i in world.DISTRACTOR_PHOTOS if i != 2 and subject.photos[i].look == 0]
        add("negative/without", segment_photos(sam, persam, targets), targets)
        add("negative/with", segment_photos(sam, reference_of(sam, [first], [source]), targets), targets)
        add("negative/without_f", segment_photos(sam, persam_f, targets), targets)
        add("negative/with_f", segment_photos(sam, reference_of(sam, [first], [source], True, iterations), targets), targets)
        if not video:
            continue
        frames = torch.from_numpy(np.stack([f.image for f in subject.sequence])).float() / 255
        for key, carried in (("video/carried", True), ("video/each", False)):
            result = segment_frames(sam, persam, frames, video=carried)
            add(key, [(m.numpy() > 0.5, pts[0] if pts else (0, 0)) for m, pts in zip(result.masks, result.points)],
                subject.sequence)
    table = {key: row(key, key.split("/")[1], *value) for key, value in runs.items() if value[0]}
    table["dreambooth/coverage"] = float(np.mean([c for _, c in dreambooth]))
    return table


ORDERINGS = (  # (name, better, worse): the comparisons the issue asks about, in mask IoU
    ("PerSAM one-shot vs best constant", "one/persam", None),
    ("PerSAM-F vs PerSAM, subjects with parts", "parts/persam_f", "parts/persam"),
    ("PerSAM-F vs PerSAM, subjects without parts", "nonparts/persam_f", "nonparts/persam"),
    ("two references (best) vs one, two-look subjects", "looks/two_best", "looks/one"),
    ("two references: best-matching vs mean embedding", "looks/two_best", "looks/two_mean"),
    ("PerSAM-F two references vs one", "looks/two_f", "looks/one_f"),
    ("with a negative vs without, look-alike photos", "negative/with", "negative/without"),
    ("PerSAM-F with a negative vs without", "negative/with_f", "negative/without_f"),
    ("video: carried box vs each frame alone", "video/carried", "video/each"),
)


def difference(table: dict, better: str, worse) -> float:
    """An ordering's margin in mean IoU: ``better`` − ``worse`` (``worse`` None: − the best constant mask)."""
    return table[better].mean_iou - (table[worse].mean_iou if worse else table[better].baseline_iou)
