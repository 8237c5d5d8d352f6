"""A synthetic world of textured objects with exact masks, drawn by numpy from seeds (no renderer).

An OBJECT is a body shape with a texture, and optionally a PART (a second shape with its own texture attached
to the body: a lid, a head, a handle), so that a point on the body may mean the body or the whole object
(SAM's part-versus-whole ambiguity). Objects are painted rotated, scaled and shifted on textured backgrounds;
every painted object keeps its exact visible mask (whole, and per part).

Two uses:
- ``training_scene(seed)``: random objects on a random background, the miniature SAM's training data
  (``scripts/miniature_sam/train.py``); ``heldout_scene`` draws from seeds the training never uses.
- ``perseg()``: a synthetic PerSeg (PerSAM's personalisation set): ``SUBJECTS`` subjects, each a fixed object
  (some with parts), photographed ``PHOTOS`` times at different scales, positions, rotations and backgrounds,
  with a look-alike distractor (the same object, one colour changed) in some photos and a second look
  (other colours) for some subjects; and short sequences (the subject moving) for the video carry.
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

SIZE = 128  # images are SIZE × SIZE
SHAPES = ("ellipse", "box", "triangle", "star", "blob", "cross", "hexagon")
TEXTURES = ("stripes", "checks", "dots", "rings", "solid", "waves")
TRAINING_SEEDS = 10_000_000  # training scenes use seeds below this; held-out scenes and PerSeg use seeds above


@dataclass
class Paint:
    """One region's look: a shape in local coordinates (unit size) and a texture of two colours."""

    shape: str
    aspect: float  # width / height of the shape
    texture: str
    colours: tuple  # two RGB triples
    period: float  # texture period, in units of the object's size
    angle: float  # texture angle (radians)
    spikes: int = 5  # star / blob parameter
    phase: float = 0.0


@dataclass
class ObjectSpec:
    body: Paint
    part: Optional[Paint] = None
    part_offset: tuple = (0.0, -0.75)  # part centre relative to the body centre, in body sizes (x, y)
    part_scale: float = 0.55


@dataclass
class Painted:
    whole: np.ndarray  # (H, W) bool, visible pixels of the object
    parts: list  # visible masks of the body and the part (empty when the object has no part)


def random_colour(rng, muted=False) -> tuple:
    if muted:
        base = rng.uniform(60, 170)
        return tuple(float(np.clip(base + rng.normal(0, 25), 0, 255)) for _ in range(3))
    hue = rng.uniform(0, 1)
    rgb = np.clip(np.abs((hue * 6 + np.array([0, 4, 2])) % 6 - 3) - 1, 0, 1)  # HSV → RGB at S = V = 1
    value, saturation = rng.uniform(0.55, 1.0), rng.uniform(0.5, 1.0)
    return tuple(float(v) for v in 255 * value * (1 - saturation + saturation * rgb))


def random_paint(rng) -> Paint:
    return Paint(
        shape=str(rng.choice(SHAPES)), aspect=float(rng.uniform(0.6, 1.6)), texture=str(rng.choice(TEXTURES)),
        colours=(random_colour(rng), random_colour(rng)), period=float(rng.uniform(0.12, 0.35)),
        angle=float(rng.uniform(0, np.pi)), spikes=int(rng.integers(4, 7)), phase=float(rng.uniform(0, 2 * np.pi)),
    )


def random_object(rng, part_probability=0.4) -> ObjectSpec:
    body = random_paint(rng)
    if rng.uniform() >= part_probability:
        return ObjectSpec(body)
    part = random_paint(rng)
    angle = rng.uniform(0, 2 * np.pi)
    return ObjectSpec(body, part, (0.7 * float(np.cos(angle)), 0.7 * float(np.sin(angle))), float(rng.uniform(0.4, 0.7)))


def shape_mask(paint: Paint, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in local coordinates (u, v: the object spans about [-0.5, 0.5])."""
    u = u / np.sqrt(paint.aspect)
    v = v * np.sqrt(paint.aspect)
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    if paint.shape == "ellipse":
        return r < 0.5
    if paint.shape == "box":
        return (np.abs(u) < 0.45) & (np.abs(v) < 0.45)
    if paint.shape == "triangle":
        return (v < 0.35) & (v > 2 * np.abs(u) * 1.2 - 0.55)
    if paint.shape == "star":
        return r < 0.3 + 0.2 * np.cos(paint.spikes * theta + paint.phase) ** 2
    if paint.shape == "blob":
        return r < 0.42 + 0.08 * np.sin(paint.spikes * theta + paint.phase) + 0.05 * np.cos(2 * theta)
    if paint.shape == "cross":
        return ((np.abs(u) < 0.17) & (np.abs(v) < 0.5)) | ((np.abs(v) < 0.17) & (np.abs(u) < 0.5))
    if paint.shape == "hexagon":
        sector = np.pi / 3
        return r * np.cos((theta % sector) - sector / 2) < 0.45 * np.cos(sector / 2)
    raise ValueError(f"unknown shape {paint.shape!r}")


def texture(paint: Paint, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(…, 3) colours of the paint's texture at local coordinates (u, v)."""
    c, s = np.cos(paint.angle), np.sin(paint.angle)
    a, b = (c * u + s * v) / paint.period, (-s * u + c * v) / paint.period
    if paint.texture == "stripes":
        on = np.floor(a) % 2 == 0
    elif paint.texture == "checks":
        on = (np.floor(a) + np.floor(b)) % 2 == 0
    elif paint.texture == "dots":
        on = np.hypot(a - np.round(a), b - np.round(b)) < 0.3
    elif paint.texture == "rings":
        on = np.floor(np.hypot(u, v) / paint.period * 2) % 2 == 0
    elif paint.texture == "waves":
        on = np.sin(2 * np.pi * a + 2 * np.sin(2 * np.pi * b * 0.5 + paint.phase)) > 0
    elif paint.texture == "solid":
        shade = 0.75 + 0.25 * (u - v)  # a shaded solid: the first colour, lit from one side
        return np.asarray(paint.colours[0])[None] * np.clip(shade, 0.4, 1.2)[..., None]
    else:
        raise ValueError(f"unknown texture {paint.texture!r}")
    first, second = (np.asarray(col, np.float64) for col in paint.colours)
    return np.where(on[..., None], first, second)


def paint_object(canvas: np.ndarray, spec: ObjectSpec, centre, size: float, rotation: float) -> Painted:
    """Paint ``spec`` into ``canvas`` (float (H, W, 3)); ``size`` in pixels; returns its painted masks
    (before later objects occlude them)."""
    height, width = canvas.shape[:2]
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    dx, dy = (xx + 0.5 - centre[0]) / size, (yy + 0.5 - centre[1]) / size
    c, s = np.cos(rotation), np.sin(rotation)
    u, v = c * dx + s * dy, -s * dx + c * dy
    body = shape_mask(spec.body, u, v)
    canvas[body] = texture(spec.body, u, v)[body]
    if spec.part is None:
        return Painted(body, [])
    pu, pv = (u - spec.part_offset[0]) / spec.part_scale, (v - spec.part_offset[1]) / spec.part_scale
    part = shape_mask(spec.part, pu, pv)
    canvas[part] = texture(spec.part, pu, pv)[part]
    return Painted(body | part, [body & ~part, part])


def background(rng, height=SIZE, width=SIZE) -> np.ndarray:
    """A muted textured background: a two-colour gradient, a low-frequency pattern, and sensor noise."""
    yy, xx = np.mgrid[:height, :width] / max(height, width)
    first, second = np.asarray(random_colour(rng, muted=True)), np.asarray(random_colour(rng, muted=True))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)), 0, 1)[..., None]
    image = first * (1 - ramp) + second * ramp
    kind = rng.integers(0, 3)
    if kind == 1:  # soft blobs
        freq = rng.uniform(2, 6, 2)
        image = image + 18 * (np.sin(2 * np.pi * freq[0] * xx + rng.uniform(0, 6)) * np.sin(2 * np.pi * freq[1] * yy))[..., None]
    elif kind == 2:  # a floor: two halves
        image = np.where((yy > rng.uniform(0.4, 0.7))[..., None], image * 0.8, image)
    return image + rng.normal(0, 5, image.shape)


def finish(canvas: np.ndarray) -> np.ndarray:
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    objects: list  # per object, a Painted with its VISIBLE masks
    specs: list = field(default_factory=list)


def place(rng, size_range, taken: np.ndarray, size_of=None, tries=60):
    """A centre and size whose square (grown by a margin) does not meet ``taken``; None when none found."""
    height, width = taken.shape
    for _ in range(tries):
        size = float(rng.uniform(*size_range)) if size_of is None else size_of
        half = size * 0.62
        cx, cy = rng.uniform(half, width - half), rng.uniform(half, height - half)
        box = taken[max(0, int(cy - half)) : int(cy + half) + 1, max(0, int(cx - half)) : int(cx + half) + 1]
        if not box.any():
            return (cx, cy), size
    return None


def paint_scene(rng, specs, sizes, image=None, allow_overlap=False) -> Scene:
    """Paint ``specs`` (with sizes (lo, hi) each) at random places and rotations; visible masks kept."""
    canvas = background(rng) if image is None else image
    taken = np.zeros(canvas.shape[:2], bool)
    objects, kept = [], []
    for spec, size_range in zip(specs, sizes):
        spot = place(rng, size_range, taken if not allow_overlap else np.zeros_like(taken))
        if spot is None:
            continue
        centre, size = spot
        painted = paint_object(canvas, spec, centre, size, float(rng.uniform(0, 2 * np.pi)))
        for earlier in objects:  # later objects occlude earlier ones
            earlier.whole &= ~painted.whole
            earlier.parts = [p & ~painted.whole for p in earlier.parts]
        objects.append(painted)
        kept.append(spec)
        taken |= painted.whole
    return Scene(finish(canvas), objects, kept)


def training_scene(seed: int) -> Scene:
    """1–4 random objects (some overlapping, some with parts) on a random background."""
    if not 0 <= seed < TRAINING_SEEDS:
        raise ValueError(f"training seeds are 0 … {TRAINING_SEEDS - 1}, got {seed}")
    return random_scene(np.random.default_rng(seed))


def heldout_scene(index: int) -> Scene:
    """A scene of objects no training scene has (seeds the training never draws)."""
    return random_scene(np.random.default_rng([TRAINING_SEEDS, 1, index]))


def random_scene(rng) -> Scene:
    count = int(rng.integers(1, 5))
    specs = [random_object(rng) for _ in range(count)]
    return paint_scene(rng, specs, [(24, 64)] * count, allow_overlap=bool(rng.uniform() < 0.3))


# ---- the synthetic PerSeg ---------------------------------------------------------------------------------------

SUBJECTS = 12
PHOTOS = 8  # photo 0 is the reference; photos 1 … 7 are the held-out test photos
PARTS = (0, 1, 2, 3, 4, 5)  # subjects with a part (part-versus-whole ambiguity)
TWO_LOOKS = (6, 7, 8, 9)  # subjects with a second look (photos 4 … 7 show it; references: photo 0 and photo 4)
DISTRACTOR_PHOTOS = (2, 3, 6, 7)  # photos that also show the subject's look-alike
SEQUENCE_FRAMES = 8


@dataclass
class Photo:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool, the subject's exact visible mask
    distractor: np.ndarray  # (H, W) bool, the look-alike's mask (all False when absent)
    look: int  # 0 or 1 (the second look)


@dataclass
class Subject:
    index: int
    spec: ObjectSpec
    second_look: Optional[ObjectSpec]
    look_alike: ObjectSpec
    photos: list  # PHOTOS Photo
    sequence: list  # SEQUENCE_FRAMES Photo, the subject moving over a fixed background

    @property
    def has_parts(self) -> bool:
        return self.spec.part is not None


def recoloured(spec: ObjectSpec, rng, which: str) -> ObjectSpec:
    """The same object with other colours: ``which`` = "one" changes one colour of the body (a look-alike),
    "all" gives every region new colours (a second look)."""
    def new(paint: Paint, all_colours: bool) -> Paint:
        colours = (random_colour(rng), random_colour(rng)) if all_colours else (paint.colours[0], far_colour(rng, paint.colours))
        return Paint(**{**paint.__dict__, "colours": colours})

    body = new(spec.body, which == "all")
    part = new(spec.part, True) if spec.part is not None and which == "all" else spec.part
    return ObjectSpec(body, part, spec.part_offset, spec.part_scale)


def far_colour(rng, avoid) -> tuple:
    """A saturated colour far (in RGB) from those in ``avoid``."""
    best, distance = None, -1.0
    for _ in range(12):
        colour = random_colour(rng)
        d = min(float(np.linalg.norm(np.subtract(colour, a))) for a in avoid)
        if d > distance:
            best, distance = colour, d
    return best


def subject_spec(rng, index: int) -> ObjectSpec:
    spec = random_object(rng, part_probability=0.0)
    if index not in PARTS:
        return spec
    part = random_paint(rng)
    part.shape = str(rng.choice(("ellipse", "box", "hexagon")))  # a compact part: a lid, a head
    part.texture = "solid" if spec.body.texture != "solid" else "stripes"
    side = float(rng.choice((-1, 1)))
    return ObjectSpec(spec.body, part, (0.0, side * 0.62), float(rng.uniform(0.45, 0.6)))


def subject_photo(rng, spec, distractor_spec, clutter: int, size=None, centre=None, rotation=None, base=None) -> Photo:
    canvas = background(rng) if base is None else base.copy()
    taken = np.zeros(canvas.shape[:2], bool)
    objects = []
    if distractor_spec is not None:
        spot = place(rng, (34, 52), taken)
        if spot:
            painted = paint_object(canvas, distractor_spec, spot[0], spot[1], float(rng.uniform(0, 2 * np.pi)))
            taken |= painted.whole
            objects.append(("distractor", painted))
    for _ in range(clutter):
        spot = place(rng, (20, 34), taken)
        if spot:
            painted = paint_object(canvas, random_object(rng, 0.3), spot[0], spot[1], float(rng.uniform(0, 2 * np.pi)))
            taken |= painted.whole
    if centre is None:
        spot = place(rng, (34, 56), taken, tries=200)
        centre, size = spot if spot else ((SIZE / 2, SIZE / 2), 40.0)
    rotation = float(rng.uniform(0, 2 * np.pi)) if rotation is None else rotation
    subject = paint_object(canvas, spec, centre, size, rotation)
    distractor = np.zeros(canvas.shape[:2], bool)
    for name, painted in objects:
        if name == "distractor":
            distractor = painted.whole & ~subject.whole
    return Photo(finish(canvas), subject.whole, distractor, 0)


def perseg(seed: int = 0) -> list:
    """The synthetic PerSeg: ``SUBJECTS`` Subjects (deterministic for a seed)."""
    subjects = []
    for index in range(SUBJECTS):
        rng = np.random.default_rng([TRAINING_SEEDS, 2, seed, index])
        spec = subject_spec(rng, index)
        second = recoloured(spec, rng, "all") if index in TWO_LOOKS else None
        look_alike = recoloured(spec, rng, "one")
        photos = []
        for p in range(PHOTOS):
            look = 1 if second is not None and p >= PHOTOS // 2 else 0
            photo = subject_photo(rng, second if look else spec, look_alike if p in DISTRACTOR_PHOTOS else None,
                                  clutter=int(rng.integers(0, 3)))
            photo.look = look
            photos.append(photo)
        subjects.append(Subject(index, spec, second, look_alike, photos, sequence(rng, spec)))
    return subjects


def sequence(rng, spec) -> list:
    """The subject crossing a fixed background with clutter: ``SEQUENCE_FRAMES`` frames, moving, turning, growing."""
    base = background(rng)
    clutter_rng = np.random.default_rng(rng.integers(1 << 31))
    for _ in range(2):
        centre = (clutter_rng.uniform(20, SIZE - 20), clutter_rng.uniform(20, SIZE - 20))
        paint_object(base, random_object(clutter_rng, 0.3), centre, clutter_rng.uniform(18, 28), clutter_rng.uniform(0, 6.3))
    start, end = rng.uniform(34, SIZE - 34, 2), rng.uniform(34, SIZE - 34, 2)
    size0, turn = float(rng.uniform(36, 46)), float(rng.uniform(-0.6, 0.6))
    rotation = float(rng.uniform(0, 2 * np.pi))
    frames = []
    for t in range(SEQUENCE_FRAMES):
        f = t / (SEQUENCE_FRAMES - 1)
        centre = tuple(start + (end - start) * f)
        frames.append(subject_photo(rng, spec, None, 0, size0 * (1 + 0.2 * f), centre, rotation + turn * f, base=base))
    return frames
