"""The personalised reference: one image + mask → the target's embedding (and PerSAM-F's weights)."""

from dataclasses import dataclass
from typing import Optional

import torch

from .features import as_uint8_image, as_uint8_mask, encode_image, mask_on_grid
from .location_prior import location_prior, select_points, target_embedding
from .predict import predict
from .scale_aware import scale_aware_weights


@dataclass
class Reference:
    embedding: torch.Tensor  # (1, 1, C)
    mode: str  # "persam" or "persam_f"
    weights: Optional[torch.Tensor] = None  # (3,) scale-aware weights (PerSAM-F)
    losses: Optional[torch.Tensor] = None


def make_reference(sam, image, mask, fine_tune=False, iterations=1000, callback=None, features=None) -> Reference:
    """PerSAM: mean of the masked reference features. PerSAM-F: (max + mean)/2 and the fitted weights.
    ``features``: the image's ``encode_image`` result, when the caller already has it."""
    array = as_uint8_image(image)
    mask = as_uint8_mask(mask, array.shape[:2])
    features = features if features is not None else encode_image(sam, array)
    grid = mask_on_grid(sam, mask, features.features.shape[-2:])
    if not fine_tune:
        return Reference(target_embedding(features.features, grid, "mean"), "persam")
    embedding = target_embedding(features.features, grid, "max_mean")
    similarity = location_prior(embedding, features, sam)
    points, labels = select_points(similarity, negative=False)
    logits_high = predict(sam, features, points, labels, multimask=True).logits_high
    target = torch.as_tensor(mask > 0)
    weights, losses = scale_aware_weights(logits_high, target, iterations=iterations, callback=callback)
    return Reference(embedding, "persam_f", weights, losses)


def save_reference(reference: Reference, path) -> None:
    """Write a reference (PerSAM or PerSAM-F) to a .safetensors file, once, for workers that each load it."""
    from safetensors.torch import save_file

    tensors = {"embedding": reference.embedding.detach().float().cpu().contiguous()}
    if reference.weights is not None:
        tensors["weights"] = reference.weights.detach().float().cpu().contiguous()
    save_file(tensors, str(path), metadata={"mode": reference.mode, "format": "persam_reference"})


def load_reference(path, device="cpu") -> Reference:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != "persam_reference" or metadata.get("mode") not in ("persam", "persam_f"):
            raise ValueError(f"{path}: not a PerSAM reference file (written by save_reference)")
        weights = f.get_tensor("weights") if "weights" in f.keys() else None
        return Reference(f.get_tensor("embedding"), metadata["mode"], weights)
