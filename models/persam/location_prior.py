"""PerSAM's location prior: where the target is (and is not) in a new image."""

import torch
import torch.nn.functional as F


def target_embedding(features: torch.Tensor, mask_grid: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Mean of the reference features under the mask (PerSAM), or (max + mean)/2 (PerSAM-F) → (1, 1, C)."""
    if not (mask_grid > 0).any():
        raise ValueError(
            "mask: the reference mask is empty on SAM's feature grid; paint the subject (values ≥ 0.5) "
            "and make it larger than a few pixels"
        )
    selected = features[0].permute(1, 2, 0)[mask_grid > 0]
    mean = selected.mean(0)
    embedding = mean if mode == "mean" else selected.max(0)[0] / 2 + mean / 2
    return embedding[None, None]


def location_prior(embedding: torch.Tensor, image, sam) -> torch.Tensor:
    """Cosine similarity between the target embedding and every feature cell, ×4 bilinear, then SAM's
    post-processing to the image size → (H, W)."""
    target = embedding.reshape(1, -1)
    target = target / target.norm(dim=-1, keepdim=True)
    feat = image.features[0]
    c, h, w = feat.shape
    feat = (feat / feat.norm(dim=0, keepdim=True)).reshape(c, h * w)
    sim = (target @ feat).reshape(1, 1, h, w)
    sim = F.interpolate(sim, scale_factor=4, mode="bilinear")
    return sam.postprocess_masks(sim, input_size=image.input_size, original_size=image.original_size)[0, 0]


def select_points(similarity: torch.Tensor, negative: bool = True):
    """Positive point = argmax of the prior, negative = argmin; as (x = column, y = row) pixel coordinates."""
    w = similarity.shape[1]

    def xy(index):
        row = index // w
        return [int(index - row * w), int(row)]

    flat = similarity.flatten()
    points, labels = [xy(flat.topk(1)[1][0])], [1]
    if negative:
        points.append(xy(flat.topk(1, largest=False)[1][0]))
        labels.append(0)
    return torch.tensor(points), torch.tensor(labels)


def attention_similarity(similarity: torch.Tensor, grid) -> torch.Tensor:
    """``attn_sim = sigmoid((S − mean)/std)`` resized to the feature grid, flattened → (1, 1, 1, h·w).

    Like the official code it is computed on the image-sized prior and stretched over the whole (padded)
    grid; the grid size comes from the feature map instead of a literal 64."""
    sim = (similarity - similarity.mean()) / torch.std(similarity)
    sim = F.interpolate(sim[None, None], size=tuple(grid), mode="bilinear")
    return sim.sigmoid().unsqueeze(0).flatten(3)


def reference_prior(embeddings: torch.Tensor, image, sam, negatives=None):
    """The location prior of a reference set: per pixel the best match over the positive ``embeddings``
    (K, 1, C); with ``negatives`` (M, 1, C), pixels that match some negative better than every positive are
    lowered by that margin, ``S = P − max(0, N − P)`` (P, N: best positive / negative cosine). With one
    positive and no negatives this is ``location_prior`` itself, bit for bit.
    Returns (S (H, W), per-reference priors (K, H, W)). A negative only lowers the prior (the positive point and
    target-guided attention move off the look-alike); it adds no negative point: on the miniature SAM such a point
    trimmed the subject's mask where the two lie close (docs/persam.md, "Several references and negatives")."""
    priors = torch.stack([location_prior(e, image, sam) for e in embeddings])
    positive = priors[0] if len(priors) == 1 else priors.amax(0)
    if negatives is None or not len(negatives):
        return positive, priors
    margins = torch.stack([location_prior(e, image, sam) for e in negatives]) - positive  # (M, H, W)
    return positive - margins.amax(0).clamp(min=0), priors


def guidance_embedding(embeddings: torch.Tensor, priors: torch.Tensor, point, rule: str = "best") -> torch.Tensor:
    """The target embedding that steers the decoder (target-guided attention's prior is the set's; this is
    the target-semantic prompt): ``"mean"`` of the references' embeddings, or the ``"best"``-matching
    reference, the one most similar to the test image at the chosen positive point. → (1, 1, C)."""
    if len(embeddings) == 1:
        return embeddings[0:1]
    if rule == "mean":
        return embeddings.mean(0, keepdim=True)
    x, y = (int(v) for v in point)
    return embeddings[int(priors[:, y, x].argmax())][None]
