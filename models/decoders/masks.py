"""Masks from DICEPTION's segmentation answers.

- Point-prompted and semantic segmentation are trained as white-on-black masks: threshold the channel mean.
- Entity segmentation (and, per the paper, semantic maps) paint each instance in a random colour: colours
  are clustered in CIELAB (ΔE tolerance, black = background), each cluster is split into connected
  components, regions under ``min_area`` pixels are dropped, and instances are ordered by area (largest first).
"""

import numpy as np
import torch
from scipy import ndimage

from .validation import check_rgb


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


def decode_instances(image: torch.Tensor, tolerance: float = 12.0, min_area: int = 64) -> torch.Tensor:
    """One (H, W, 3) colour-coded answer → (N, H, W) bool instance masks, largest first (N may be 0)."""
    rgb = check_rgb(image)[0].clamp(0, 1).cpu().numpy().astype(np.float64)
    h, w, _ = rgb.shape
    lab = srgb_to_lab(rgb).reshape(-1, 3)
    centroids = colour_centroids(lab, tolerance, max(1, min_area // 4))
    labels = drop_edge_colours(lab, centroids, h, w)
    kept, strips = [], []
    for k in range(1, len(centroids)):
        components, count = ndimage.label(labels == k, structure=np.ones((3, 3)))
        for c in range(1, count + 1):
            region = components == c
            solid = ndimage.binary_erosion(region, np.ones((3, 3))).any()
            (kept if solid else strips).append(region)
    kept = attach_strips(kept, strips)
    instances = []
    for region in kept:
        area = int(region.sum())
        if area >= min_area:
            ys, xs = np.nonzero(region)
            instances.append((-area, int(ys[0]), int(xs[0]), region))
    instances.sort(key=lambda item: item[:3])
    if not instances:
        return torch.zeros(0, h, w, dtype=torch.bool)
    return torch.from_numpy(np.stack([region for *_, region in instances]))


def attach_strips(regions: list, strips: list) -> list:
    """Thin strips (a neighbour's blended edge that landed in another colour) join the region they touch most."""
    if not regions:
        return regions
    ids = np.zeros(regions[0].shape, np.int64)
    for i, region in enumerate(regions, start=1):
        ids[region] = i
    for strip in strips:
        touching = ids[ndimage.binary_dilation(strip, np.ones((3, 3))) & ~strip]
        touching = touching[touching > 0]
        if len(touching):
            regions[np.bincount(touching).argmax() - 1] |= strip
    return regions
