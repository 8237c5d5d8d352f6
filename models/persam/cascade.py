"""PerSAM's segmentation of a new image: location prior → guided first pass → cascaded refinement."""

from dataclasses import dataclass, field

import torch

from .location_prior import attention_similarity, guidance_embedding, reference_prior, select_points
from .predict import mask_box, predict
from .scale_aware import weighted_logits
from .video import carried_prompt


GUIDANCE = "best"  # several references: the best-matching one prompts the decoder (README "Several references")


@dataclass
class Segmentation:
    mask: torch.Tensor  # (H, W) bool, the final mask
    points: torch.Tensor  # (N, 2) (x, y) pixels
    labels: torch.Tensor  # (N,) 1 = positive, 0 = negative
    similarity: torch.Tensor  # (H, W) location prior
    passes: dict = field(default_factory=dict)  # name → Prediction, and the boxes used

    @property
    def found(self) -> bool:
        return bool(self.mask.any())


def persam_segment(sam, image, embedding, exclude=None, previous_box=None, negatives=None, guidance=GUIDANCE) -> Segmentation:
    """Training-free PerSAM: [positive, negative] points with target-guided attention and target-semantic
    prompting (pass 1); refinement with pass 1's logits (pass 2, best of 3); then with pass 2's box (pass 3).
    ``embedding`` (K, 1, C): one target embedding per reference (K = 1: the official one-shot PerSAM);
    ``negatives`` (M, 1, C): embeddings of what must not be selected (``reference_prior``: they lower the
    prior); ``guidance``: which embedding prompts the decoder (``guidance_embedding``).
    ``exclude`` (H, W) bool: pixels already explained (other instances) get the prior's minimum.
    ``previous_box``: video, the previous frame's box of this instance also prompts pass 1 (``carried_prompt``)."""
    similarity, priors = reference_prior(embedding, image, sam, negatives)
    similarity = suppress(similarity, exclude)
    points, labels = select_points(similarity, negative=True)
    target = guidance_embedding(embedding, priors, points[0], guidance)
    points, labels, box = carried_prompt(points, labels, previous_box, *image.original_size)
    attn_sim = attention_similarity(similarity, image.features.shape[-2:])
    first = predict(sam, image, points, labels, box=box, multimask=False, attn_sim=attn_sim, target_embedding=target)
    second = predict(sam, image, points, labels, mask_input=first.logits[0:1], multimask=True)
    best = second.mask(second.best())
    result = Segmentation(best, points, labels, similarity, {"attn_sim": attn_sim, "pass1": first, "pass2": second})
    return refine_with_box(sam, image, result, best, second.logits[second.best()][None], "pass3")


def persam_f_segment(sam, image, embedding, weights, exclude=None, previous_box=None, negatives=None) -> Segmentation:
    """PerSAM-F: positive point only; the three multimask logits mixed with the learned scale-aware weights, then
    two box-prompted refinements. The other arguments as in ``persam_segment``."""
    similarity, _ = reference_prior(embedding, image, sam, negatives)
    similarity = suppress(similarity, exclude)
    points, labels = select_points(similarity, negative=False)
    points, labels, box = carried_prompt(points, labels, previous_box, *image.original_size)
    first = predict(sam, image, points, labels, box=box, multimask=True)
    logit_high = weighted_logits(first.logit_high, weights)
    logit = weighted_logits(first.logits, weights)
    result = Segmentation(logit_high > 0, points, labels, similarity,
                          {"pass1": first, "weighted_logit_high": logit_high, "weighted_logit": logit})
    result = refine_with_box(sam, image, result, logit_high > 0, logit[None], "pass2")
    if "pass2" not in result.passes:
        return result
    second = result.passes["pass2"]
    return refine_with_box(sam, image, result, second.mask(second.best()), second.logits[second.best()][None], "pass3")


def suppress(similarity: torch.Tensor, exclude) -> torch.Tensor:
    if exclude is None or not exclude.any():
        return similarity
    return similarity.masked_fill(exclude.to(similarity.device), float(similarity.min()))


def refine_with_box(sam, image, result: Segmentation, mask, mask_input, name) -> Segmentation:
    """One refinement pass prompted by the points, ``mask``'s bounding box and ``mask_input`` logits.
    An empty ``mask`` (nothing found) ends the cascade: the official code would crash there."""
    box = mask_box(mask)
    if box is None:
        result.mask = mask
        return result
    refined = predict(sam, image, result.points, result.labels, box=box, mask_input=mask_input, multimask=True)
    result.passes[name] = refined
    result.passes[name + "_box"] = box
    result.mask = refined.mask(refined.best())
    return result
