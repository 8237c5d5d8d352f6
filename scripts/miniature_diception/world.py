"""The miniature DICEPTION's synthetic world: a few shaded, textured objects on a textured floor before a wall,
ray-cast by this module (numpy only, seeded, deterministic) with exact ground truth per pixel.

Camera: a pinhole at 1 m above the floor, pitched down by ``PITCH`` degrees, ``FOV`` degrees wide. Every answer is
per pixel centre (no antialiasing), so the ids and the geometry agree exactly with the colours.

- ``depth``: z-depth in metres along the optical axis (> 0), as depth datasets store it.
- ``normals``: unit vectors in the camera frame, OpenGL convention (+X right, +Y up, +Z towards the viewer), the
  convention ``models.decoders.normals.decode_normals`` reads back.
- ``instance``: 0 for the floor and the wall, 1…n for the objects (``objects[i]['id']``).
- ``semantic``: 0 for the floor and the wall, else the object's class id (``CLASSES``: a COCO name per shape, since
  DICEPTION's semantic prompt names a COCO category).
- ``objects``: per object ``id``, ``cls`` (class id), ``shape``, ``colour`` (its surface colour, RGB 0–255),
  ``entity_colour`` (the colour its entity-segmentation answer paints it, RGB 0–255), ``area`` (visible pixels).
"""

from dataclasses import dataclass, field

import numpy as np

CLASSES = {1: "sports ball", 2: "suitcase", 3: "bottle"}  # class id → COCO category (sphere, box, cylinder)
SHAPES = {1: "sphere", 2: "box", 3: "cylinder"}
COLOURS = {  # surface colours: named, so that a task like "highlight the red objects" has a ground truth
    "red": (210, 40, 35), "green": (40, 170, 60), "blue": (40, 80, 215), "yellow": (230, 200, 40),
    "magenta": (200, 50, 190), "cyan": (40, 190, 200), "orange": (240, 130, 30), "white": (225, 225, 225),
}
ENTITY_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180))
TRAIN_SEEDS = range(0, 1_000_000)
HELD_OUT_SEEDS = range(1_000_000, 1_000_512)
FOV = 60.0  # degrees, horizontal = vertical (square images)
PITCH = 15.0  # degrees, camera looking down
CAMERA_HEIGHT = 1.0  # metres above the floor
WALL_DISTANCE = 7.0  # metres (world z of the back wall is -WALL_DISTANCE)
LIGHT = np.array([-0.45, 0.75, 0.5]) / np.linalg.norm([-0.45, 0.75, 0.5])  # towards the light, world frame


@dataclass
class Scene:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres
    normals: np.ndarray  # (H, W, 3) float32 unit, camera frame (OpenGL)
    instance: np.ndarray  # (H, W) int32
    semantic: np.ndarray  # (H, W) int32
    objects: list = field(default_factory=list)
    seed: int = 0


def _camera(size: int):
    """Ray directions (H, W, 3) in the world frame and the world→camera rotation."""
    f = 0.5 / np.tan(np.radians(FOV) / 2)
    c = (np.arange(size) + 0.5) / size - 0.5
    x, y = np.meshgrid(c, -c)  # +x right, +y up
    d_cam = np.stack([x, y, -np.full_like(x, f)], -1)
    d_cam /= np.linalg.norm(d_cam, axis=-1, keepdims=True)
    p = np.radians(PITCH)
    to_world = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])  # pitch down about x
    return d_cam @ to_world.T, to_world.T  # world dirs; to_camera = to_world⁻¹ = to_worldᵀ


def _place(rng: np.random.Generator):
    """2–4 objects on the floor (world y = -CAMERA_HEIGHT), footprints apart."""
    objects, tries = [], 0
    count = int(rng.integers(2, 5))
    names = list(COLOURS)
    while len(objects) < count and tries < 200:
        tries += 1
        cls = int(rng.integers(1, 4))
        z = -rng.uniform(2.2, 4.2)
        half = np.tan(np.radians(FOV) / 2) * -z * 0.8
        x = rng.uniform(-half, half)
        if cls == 1:
            r = rng.uniform(0.35, 0.6)
            dims, foot = (r,), r
        elif cls == 2:
            hx, hz, h = rng.uniform(0.3, 0.55), rng.uniform(0.3, 0.55), rng.uniform(0.4, 1.0)
            dims, foot = (hx, h, hz), float(np.hypot(hx, hz))
        else:
            r, h = rng.uniform(0.22, 0.4), rng.uniform(0.6, 1.3)
            dims, foot = (r, h), r
        if any(np.hypot(x - o["x"], z - o["z"]) < foot + o["foot"] + 0.1 for o in objects):
            continue
        colour = names[int(rng.integers(len(names)))]
        objects.append({"cls": cls, "shape": SHAPES[cls], "x": float(x), "z": float(z), "dims": tuple(map(float, dims)),
                        "foot": foot, "colour_name": colour, "colour": COLOURS[colour],
                        "stripes": float(rng.uniform(2, 4)), "phase": float(rng.uniform(0, 2 * np.pi))})
    return objects


def _hit_sphere(d, centre, r):
    b = d @ centre
    disc = b * b - (centre @ centre - r * r)
    t = np.where(disc >= 0, b - np.sqrt(np.maximum(disc, 0)), np.inf)
    t = np.where(t > 1e-6, t, np.inf)
    p = d * t[..., None]
    return t, (p - centre) / r


def _hit_box(d, lo, hi):
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1, t2 = lo * inv, hi * inv
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    near, far = tmin.max(-1), tmax.min(-1)
    t = np.where((near <= far) & (near > 1e-6), near, np.inf)
    axis = tmin.argmax(-1)
    normal = np.zeros(d.shape)
    sign = -np.sign(np.take_along_axis(d, axis[..., None], -1))[..., 0]
    np.put_along_axis(normal, axis[..., None], sign[..., None], -1)
    return t, normal


def _hit_cylinder(d, base, r, h):
    """Vertical cylinder: side and top cap (its bottom stands on the floor)."""
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = d[..., 0] * base[0] + d[..., 2] * base[2]
    c = base[0] ** 2 + base[2] ** 2 - r * r
    disc = b * b - a * c
    ts = np.where(disc >= 0, (b - np.sqrt(np.maximum(disc, 0))) / np.maximum(a, 1e-12), np.inf)
    y = d[..., 1] * ts
    ts = np.where((ts > 1e-6) & (y >= base[1]) & (y <= base[1] + h), ts, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = (base[1] + h) / np.where(np.abs(d[..., 1]) < 1e-12, 1e-12, d[..., 1])
    pc = d * tc[..., None]
    tc = np.where((tc > 1e-6) & ((pc[..., 0] - base[0]) ** 2 + (pc[..., 2] - base[2]) ** 2 <= r * r), tc, np.inf)
    side = ts <= tc
    t = np.minimum(ts, tc)
    p = d * np.where(np.isfinite(t), t, 0)[..., None]
    n_side = np.stack([(p[..., 0] - base[0]) / r, np.zeros_like(t), (p[..., 2] - base[2]) / r], -1)
    normal = np.where(side[..., None], n_side, np.array([0.0, 1.0, 0.0]))
    return t, normal


def scene(seed: int, size: int = 128) -> Scene:
    """The scene of ``seed`` rendered at ``size``×``size``: the same seed always gives the same arrays."""
    rng = np.random.default_rng(seed)
    placed = _place(rng)
    floor_a, floor_b = rng.uniform(0.35, 0.75, 3), rng.uniform(0.35, 0.75, 3)
    wall_a = rng.uniform(0.45, 0.9, 3)
    wall_stripes = rng.uniform(0.5, 2.0)
    checker = rng.uniform(0.4, 0.9)  # floor tile size in metres

    d, to_camera = _camera(size)
    floor_y = -CAMERA_HEIGHT
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(d[..., 1] < -1e-9, floor_y / d[..., 1], np.inf)
        t_wall = np.where(d[..., 2] < -1e-9, -WALL_DISTANCE / d[..., 2], np.inf)
    t = np.minimum(t_floor, t_wall)
    normal = np.where((t_floor <= t_wall)[..., None], np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    instance = np.zeros(d.shape[:2], np.int32)
    for i, o in enumerate(placed, start=1):
        if o["cls"] == 1:
            r = o["dims"][0]
            ti, ni = _hit_sphere(d, np.array([o["x"], floor_y + r, o["z"]]), r)
        elif o["cls"] == 2:
            hx, h, hz = o["dims"]
            ti, ni = _hit_box(d, np.array([o["x"] - hx, floor_y, o["z"] - hz]), np.array([o["x"] + hx, floor_y + h, o["z"] + hz]))
        else:
            r, h = o["dims"]
            ti, ni = _hit_cylinder(d, np.array([o["x"], floor_y, o["z"]]), r, h)
        closer = ti < t
        t = np.where(closer, ti, t)
        normal = np.where(closer[..., None], ni, normal)
        instance[closer] = i
    point = d * t[..., None]

    # albedo: floor checks, wall stripes, objects' colour with soft stripes along their height
    albedo = np.empty(d.shape)
    on_floor = (instance == 0) & (t_floor <= t_wall)
    on_wall = (instance == 0) & ~on_floor
    tiles = (np.floor(point[..., 0] / checker) + np.floor(point[..., 2] / checker)) % 2 == 0
    albedo[on_floor] = np.where(tiles[on_floor][:, None], floor_a, floor_b)
    stripe = 0.5 + 0.5 * np.sin(point[..., 1] * 2 * np.pi * wall_stripes)
    albedo[on_wall] = wall_a * (0.8 + 0.2 * stripe[on_wall][:, None])
    for i, o in enumerate(placed, start=1):
        m = instance == i
        band = 0.5 + 0.5 * np.sin((point[..., 1][m] - floor_y) * o["stripes"] * 2 * np.pi / 1.0 + o["phase"])
        albedo[m] = np.array(o["colour"]) / 255 * (0.8 + 0.2 * band[:, None])
    shade = 0.35 + 0.65 * np.clip(normal @ LIGHT, 0, 1)
    fog = np.exp(-0.03 * t)  # a little aerial perspective
    rgb = np.clip(albedo * shade[..., None] * fog[..., None] + 0.1 * (1 - fog[..., None]), 0, 1)

    normals_cam = normal @ to_camera.T
    normals_cam /= np.linalg.norm(normals_cam, axis=-1, keepdims=True)
    depth = -(point @ to_camera.T)[..., 2]
    semantic = np.zeros_like(instance)
    objects, left_to_right = [], []
    for i, o in enumerate(placed, start=1):
        area = int((instance == i).sum())
        semantic[instance == i] = o["cls"]
        objects.append({"id": i, "cls": o["cls"], "category": CLASSES[o["cls"]], "shape": o["shape"],
                        "colour": tuple(int(c) for c in o["colour"]), "colour_name": o["colour_name"], "area": area})
    # entity colours: left to right by the visible region's mean column (a rule a model can learn)
    columns = np.arange(size)[None, :].repeat(size, 0)
    visible = sorted((float(columns[instance == o["id"]].mean()), o["id"]) for o in objects if o["area"])
    rank = {oid: k for k, (_, oid) in enumerate(visible)}
    for o in objects:
        o["entity_colour"] = ENTITY_COLOURS[rank[o["id"]] % len(ENTITY_COLOURS)] if o["id"] in rank else (0, 0, 0)
    return Scene(
        rgb=np.round(rgb * 255).astype(np.uint8), depth=depth.astype(np.float32), normals=normals_cam.astype(np.float32),
        instance=instance, semantic=semantic, objects=objects, seed=seed,
    )
