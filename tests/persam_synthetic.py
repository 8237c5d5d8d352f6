"""A synthetic few-shot PerSAM set the tests build: one subject in two looks, and a look-alike distractor.

A random tiny SAM has no notion of objects, but its image encoder (a random patch projection and a couple of
attention blocks) still maps different colour patterns to different, stable feature directions, and equal
patterns to equal ones. So the set is made of patterns, not objects: a noisy grey background, the SUBJECT as a
square in one of two looks (look A: red/yellow vertical stripes; look B: blue/cyan checks), and in half of the
test images a DISTRACTOR square that looks like look A with one colour changed (red/green stripes): the one
that a single look-A reference confuses with the subject. Positions and sizes are drawn from a seeded
generator; each test image comes with the subject's true mask. ``check_separable`` verifies (and the tests
assert) that the tiny SAM's features do tell the patterns apart.
"""

from dataclasses import dataclass

import numpy as np

SIZE = 128  # test images are SIZE × SIZE (the reference images too)
SIDE = (36, 48)  # square side range, pixels
LOOKS = {
    "A": ((220, 30, 30), (250, 220, 40), "stripes"),
    "B": ((30, 60, 220), (40, 220, 230), "checks"),
    "distractor": ((220, 30, 30), (40, 200, 40), "stripes"),
}


@dataclass
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    subject: np.ndarray  # (H, W) bool, the subject's true mask
    look: str  # "A" or "B"
    distractor: np.ndarray  # (H, W) bool, the distractor (all False when absent)


def pattern(look: str, side: int) -> np.ndarray:
    first, second, kind = LOOKS[look]
    yy, xx = np.mgrid[:side, :side]
    period = 3
    on = (xx // period) % 2 == 0 if kind == "stripes" else ((xx // period) + (yy // period)) % 2 == 0
    return np.where(on[..., None], np.array(first, np.uint8), np.array(second, np.uint8))


def background(rng) -> np.ndarray:
    return np.clip(rng.normal((70, 110, 70), 6, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


def place(image, look, rng, avoid=None):
    """Paint a square of ``look`` somewhere (not overlapping ``avoid``); returns its mask."""
    for _ in range(200):
        side = int(rng.integers(*SIDE))
        x, y = (int(v) for v in rng.integers(0, SIZE - side, 2))
        mask = np.zeros((SIZE, SIZE), bool)
        mask[y : y + side, x : x + side] = True
        grown = np.zeros_like(mask)
        grown[max(0, y - 6) : y + side + 6, max(0, x - 6) : x + side + 6] = True
        if avoid is None or not (grown & avoid).any():
            image[mask] = pattern(look, side).reshape(-1, 3)
            return mask
    raise RuntimeError("could not place the square")


def sample(rng, look: str, distractor: bool) -> Sample:
    image = background(rng)
    subject = place(image, look, rng)
    other = place(image, "distractor", rng, avoid=subject) if distractor else np.zeros_like(subject)
    return Sample(image, subject, look, other)


def make_reference(sam, references, negative=None, count=None, fine_tune=False, iterations=200):
    """The reference set of the first ``count`` references (all when None), with the negative's distractor."""
    from models.persam import make_reference_set

    chosen = references[: count or len(references)]
    negatives = ([negative.image], [negative.distractor.astype(np.float32)]) if negative is not None else ([], [])
    return make_reference_set(sam, [r.image for r in chosen], [r.subject.astype(np.float32) for r in chosen],
                              *negatives, fine_tune=fine_tune, iterations=iterations)


def build_set(seed: int = 0, tests: int = 24):
    """→ (references: [look A sample, look B sample], negative: a distractor sample (its mask is the
    distractor), test samples: ``tests`` images alternating looks A/B, a distractor in every other pair)."""
    rng = np.random.default_rng(seed)
    references = [sample(rng, "A", False), sample(rng, "B", False)]
    negative = sample(rng, "A", True)  # a photo with the subject AND the look-alike; the negative mask is the look-alike
    test = [sample(rng, "AB"[i % 2], (i // 2) % 2 == 1) for i in range(tests)]
    return references, negative, test


@dataclass
class Scores:
    mean_iou: float  # of the final masks against the subject's true masks
    on_subject: float  # share of test images whose positive point lands on the subject
    distractor_picks: int  # test images whose positive point lands on the distractor
    images: int


def evaluate(sam, reference, test, guidance=None, features=None) -> Scores:
    """Segment every test image with ``reference``; ``guidance`` overrides the decoder-guidance rule;
    ``features``: the test images' ``encode_images`` results, when already computed."""
    from models.persam import encode_images
    from models.persam.cascade import GUIDANCE, persam_f_segment, persam_segment

    ious, hits, picks = [], 0, 0
    features = features or encode_images(sam, [s.image for s in test])
    for s, features in zip(test, features):
        if reference.mode == "persam_f":
            result = persam_f_segment(sam, features, reference.embedding, reference.weights, negatives=reference.negatives)
        else:
            result = persam_segment(sam, features, reference.embedding, negatives=reference.negatives,
                                    guidance=guidance or GUIDANCE)
        mask = result.mask.cpu().numpy()
        ious.append((mask & s.subject).sum() / max(1, (mask | s.subject).sum()))
        x, y = (int(v) for v in result.points[0].tolist())
        hits += bool(s.subject[y, x])
        picks += bool(s.distractor[y, x])
    return Scores(float(np.mean(ious)), hits / len(test), picks, len(test))
