"""Masks from DICEPTION's segmentation answers.

- Point-prompted and semantic segmentation are trained as white-on-black masks: threshold the channel mean.
- Entity segmentation (and, per the paper, semantic maps) paint each instance in a random colour: colours
  are clustered in CIELAB (ΔE tolerance, black = background), each cluster is split into connected
  components, fragments join the region they touch most and touching regions of close colours merge
  (``merge_regions``), regions under ``min_area`` pixels are dropped, and instances are ordered by area (largest first).
  Given the photo the answer was made from, touching regions also merge where the photo shows no edge between them
  (``photo_edges``): a model unsure of an object's colour paints it in patches, but the object has no edge inside.
"""

import numpy as np
import torch
from scipy import ndimage

from .validation import check_rgb

MERGE_TOLERANCE = 20.0  # ΔE; chosen on the miniature DICEPTION: docs/decoders.md
EDGE_TOLERANCE = 10.0  # ΔE per pixel of the photo (half a colour step across one pixel); docs/decoders.md


def decode_mask(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B, H, W, 3) white-on-black answers → (B, H, W) float masks of 0/1."""
    return (check_rgb(images).mean(-1) > threshold).float()


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) sRGB in [0, 1] → CIELAB (D65)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_centroids(lab: np.ndarray, tolerance: float, min_count: int) -> np.ndarray:
    """Distinct colours: the most populated Lab bins, each at least ``tolerance`` from the ones kept.
    Black (the background) is always the first centroid. Two k-means refinements follow."""
    bins = np.floor(lab / tolerance).astype(np.int64)
    keys, inverse, counts = np.unique(bins, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(keys), 3))
    np.add.at(sums, inverse, lab)
    means = sums / counts[:, None]
    centroids = [np.zeros(3)]
    for i in np.argsort(-counts, kind="stable"):
        if counts[i] < min_count:
            break
        if min(np.linalg.norm(means[i] - c) for c in centroids) >= tolerance:
            centroids.append(means[i])
    centroids = np.array(centroids)
    for _ in range(2):
        labels = nearest(lab, centroids)
        for k in range(1, len(centroids)):
            if (labels == k).any():
                centroids[k] = lab[labels == k].mean(0)
    return centroids


def nearest(lab: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.argmin(((lab[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)


def drop_edge_colours(lab: np.ndarray, centroids: np.ndarray, h: int, w: int, solidity: float = 0.3) -> np.ndarray:
    """Label map after removing colours that only occur as thin edges (JPEG / antialiasing blends between
    regions): a colour whose pixels mostly vanish under a 3×3 erosion is not an instance; its pixels go to
    the nearest remaining colour."""
    keep = np.ones(len(centroids), bool)
    labels = nearest(lab, centroids).reshape(h, w)
    for k in range(1, len(centroids)):
        region = labels == k
        area = region.sum()
        if area and ndimage.binary_erosion(region, np.ones((3, 3))).sum() < solidity * area:
            keep[k] = False
    kept = np.flatnonzero(keep)
    return kept[nearest(lab, centroids[kept])].reshape(h, w)


def decode_instances(image: torch.Tensor, tolerance: float = 12.0, min_area: int = 64,
                     merge_tolerance: float = MERGE_TOLERANCE, photo: torch.Tensor | None = None,
                     edge_tolerance: float = EDGE_TOLERANCE) -> torch.Tensor:
    """One (H, W, 3) colour-coded answer → (N, H, W) bool instance masks, largest first (N may be 0).

    ``merge_tolerance`` (ΔE): touching regions whose mean colours are closer than this are one instance (a model
    unsure of an object's colour paints it in patches of several); 0 keeps every colour apart.
    ``photo`` (H', W', 3), optional: the image the answer was made from (any size; resized to the answer's). Touching
    regions are also one instance when, along most of the line where they meet, the photo's edge strength is under
    ``edge_tolerance`` (``photo_edges``)."""
    rgb = check_rgb(image)[0].clamp(0, 1).cpu().numpy().astype(np.float64)
    h, w, _ = rgb.shape
    lab = srgb_to_lab(rgb).reshape(-1, 3)
    centroids = colour_centroids(lab, tolerance, max(1, min_area // 4))
    labels = drop_edge_colours(lab, centroids, h, w)
    regions = np.zeros((h, w), np.int64)
    for k in range(1, len(centroids)):
        components, count = ndimage.label(labels == k, structure=np.ones((3, 3)))
        regions[components > 0] = components[components > 0] + regions.max()
    edges = None if photo is None else photo_edges(photo, h, w) >= edge_tolerance
    regions = merge_regions(regions, lab.reshape(h, w, 3), merge_tolerance, min_area, edges)
    instances = []
    for r in np.unique(regions[regions > 0]):
        region = regions == r
        area = int(region.sum())
        if area >= min_area and ndimage.binary_erosion(region, np.ones((3, 3))).any():  # not a thin strip
            ys, xs = np.nonzero(region)
            instances.append((-area, int(ys[0]), int(xs[0]), region))
    instances.sort(key=lambda item: item[:3])
    if not instances:
        return torch.zeros(0, h, w, dtype=torch.bool)
    return torch.from_numpy(np.stack([region for *_, region in instances]))


def photo_per_answer(answers: torch.Tensor, photos: torch.Tensor | None) -> list:
    """The photo of each answer of a batch (``decode_instances``' ``photo``): the photos' own batch, or its single
    photo for every answer; ``None`` for each without photos."""
    if photos is None:
        return [None] * len(answers)
    photos = check_rgb(photos, "photo")
    if photos.shape[0] not in (1, len(answers)):
        raise ValueError(f"photo: {photos.shape[0]} images for {len(answers)} answers; connect one photo, or one per "
                         "answer (the batch the answers were made from)")
    return [photos[min(i, photos.shape[0] - 1)] for i in range(len(answers))]


def photo_edges(photo: torch.Tensor, h: int, w: int) -> np.ndarray:
    """The photo's edge strength at the answer's size (h, w): the CIELAB Sobel gradient magnitude in ΔE per pixel
    (a sharp colour step of ΔE d reads d/2 beside it), then the strongest within a band (5 px at 128², 2·⌊side/100⌉+1
    on larger answers): where an answer draws the line between two objects is a few pixels off the photo's edge."""
    photo = check_rgb(photo, "photo")[:1].clamp(0, 1).permute(0, 3, 1, 2)
    if photo.shape[-2:] != (h, w):
        photo = torch.nn.functional.interpolate(photo, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    lab = srgb_to_lab(photo[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy().astype(np.float64))
    gradient = np.sqrt(sum(ndimage.sobel(lab[..., c], axis) ** 2 for c in range(3) for axis in (0, 1))) / 8
    band = max(5, 2 * round(min(h, w) / 100) + 1)
    return ndimage.maximum_filter(gradient, band)


def region_adjacency(regions: np.ndarray, edges: np.ndarray | None = None) -> dict:
    """{(a, b): [touching pixel pairs, those of them on a photo edge]} over 8-neighbours, a < b, both regions (not
    background); ``edges``: a bool map of photo edges (none: 0 on an edge)."""
    pairs, on_edge = [], []
    for (a, b), (ea, eb) in zip(neighbour_views(regions), neighbour_views(regions if edges is None else edges)):
        touching = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([np.minimum(a, b)[touching], np.maximum(a, b)[touching]], 1))
        on_edge.append(np.zeros(int(touching.sum()), bool) if edges is None else (ea | eb)[touching])
    pairs, on_edge = np.concatenate(pairs), np.concatenate(on_edge)
    keys, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    edged = np.bincount(inverse.reshape(-1), on_edge, minlength=len(keys)).astype(int)
    return {(int(a), int(b)): [int(n), int(e)] for (a, b), n, e in zip(keys, counts, edged)}


def neighbour_views(x: np.ndarray):
    """The four pairings of each pixel with its right, lower, lower-right and lower-left neighbour."""
    return ((x[:, :-1], x[:, 1:]), (x[:-1], x[1:]), (x[:-1, :-1], x[1:, 1:]), (x[:-1, 1:], x[1:, :-1]))


def merge_regions(regions: np.ndarray, lab: np.ndarray, merge_tolerance: float, min_area: int,
                  edges: np.ndarray | None = None) -> np.ndarray:
    """Region-adjacency merging of a label map (0 = background), one merge at a time:

    1. a fragment (under ``min_area`` pixels, or thin: nothing left after a 3×3 erosion, as a neighbour's blended
       edge is) joins the region it touches most, the smallest fragment first;
    2. otherwise the two touching regions whose mean colours are closest merge, while closer than ``merge_tolerance``;
    3. then, given the photo's ``edges`` (bool map), the closest in colour of the touching regions that meet off
       the photo's edges (on an edge along less than half of where they touch) merge.
    """
    count = int(regions.max()) + 1
    area = np.bincount(regions.ravel(), minlength=count)
    total = np.stack([np.bincount(regions.ravel(), lab[..., c].ravel(), minlength=count) for c in range(3)], 1)
    inner = (ndimage.minimum_filter(regions, 3, mode="constant", cval=-1) == regions) & (
        ndimage.maximum_filter(regions, 3, mode="constant", cval=-1) == regions)
    thin = np.bincount(regions[inner], minlength=count) == 0
    touching = region_adjacency(regions, edges)
    parent = np.arange(count)
    while touching:
        neighbours = {}
        for (a, b), (n, _) in touching.items():
            neighbours.setdefault(a, []).append((n, b))
            neighbours.setdefault(b, []).append((n, a))
        fragments = [r for r in neighbours if area[r] < min_area or thin[r]]
        if fragments:
            r = min(fragments, key=lambda f: (area[f], f))
            into = max(neighbours[r])[1]
        else:
            mean = total / np.maximum(area, 1)[:, None]
            ranked = []
            for pair, (n, edged) in touching.items():
                distance = float(np.linalg.norm(mean[pair[0]] - mean[pair[1]]))
                if distance < merge_tolerance:
                    ranked.append((0, distance, pair))
                elif edges is not None and 2 * edged < n:
                    ranked.append((1, distance, pair))
            if not ranked:
                break
            r, into = min(ranked)[2]
        area[into] += area[r]
        total[into] += total[r]
        thin[into] &= thin[r]
        parent[parent == r] = into
        merged = {}
        for (a, b), counts in touching.items():
            a, b = (into if a == r else a), (into if b == r else b)
            if a != b:
                key = (min(a, b), max(a, b))
                merged[key] = [x + y for x, y in zip(merged.get(key, [0, 0]), counts)]
        touching = merged
    return parent[regions]
