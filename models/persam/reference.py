"""The personalised reference: image(s) + mask(s) → the target's embedding(s) (and PerSAM-F's weights).

One reference is the official one-shot PerSAM. Several positive references keep one target embedding each
(the location prior takes, per pixel, the best match over them); negative references are embeddings of what
must not be selected (a look-alike). See ``location_prior.reference_prior``.
"""

from dataclasses import dataclass
from typing import Optional

import torch

from .features import as_uint8_image, as_uint8_mask, encode_image, mask_on_grid
from .location_prior import location_prior, select_points, target_embedding
from .predict import predict
from .scale_aware import scale_aware_weights


@dataclass
class Reference:
    embedding: torch.Tensor  # (K, 1, C): one target embedding per positive reference (K = 1: one-shot PerSAM)
    mode: str  # "persam" or "persam_f"
    weights: Optional[torch.Tensor] = None  # (3,) scale-aware weights (PerSAM-F)
    losses: Optional[torch.Tensor] = None
    negatives: Optional[torch.Tensor] = None  # (M, 1, C): what must not be selected, or None


def make_reference(sam, image, mask, fine_tune=False, iterations=1000, callback=None, features=None) -> Reference:
    """PerSAM: mean of the masked reference features. PerSAM-F: (max + mean)/2 and the fitted weights.
    ``features``: the image's ``encode_image`` result, when the caller already has it."""
    return make_reference_set(sam, [image], [mask], fine_tune=fine_tune, iterations=iterations, callback=callback,
                              features=[features])


def make_reference_set(sam, images, masks, negative_images=(), negative_masks=(), fine_tune=False, iterations=1000,
                       callback=None, features=None) -> Reference:
    """Several references of one subject (each image with its mask; sizes may differ between images) and
    optional negative references. PerSAM-F fits its two weights on all positive references together: the
    loss is the MEAN of the references' losses (with one reference, the official loss). ``features``: a list
    with each image's ``encode_image`` result or None."""
    if len(images) != len(masks) or not len(images):
        raise ValueError(f"mask: expected one mask per reference image, got {len(masks)} mask(s) for {len(images)} image(s)")
    if len(negative_images) != len(negative_masks):
        raise ValueError(
            f"negative_masks: expected one mask per negative image, got {len(negative_masks)} for {len(negative_images)}"
        )
    features = list(features) if features is not None else [None] * len(images)
    mode = "max_mean" if fine_tune else "mean"
    embeddings, fits = [], []
    for i, (image, mask) in enumerate(zip(images, masks)):
        array = as_uint8_image(image)
        mask = as_uint8_mask(mask, array.shape[:2])
        found = features[i] if features[i] is not None else encode_image(sam, array)
        grid = mask_on_grid(sam, mask, found.features.shape[-2:])
        embedding = target_embedding(found.features, grid, mode)
        embeddings.append(embedding)
        if fine_tune:  # the multimask logits at the reference's own prior point, and its mask
            points, labels = select_points(location_prior(embedding, found, sam), negative=False)
            fits.append((predict(sam, found, points, labels, multimask=True).logits_high, torch.as_tensor(mask > 0)))
    negatives = [negative_embedding(sam, image, mask, mode) for image, mask in zip(negative_images, negative_masks)]
    embedding = embeddings[0] if len(embeddings) == 1 else torch.cat(embeddings)
    negatives = torch.cat(negatives) if negatives else None
    if not fine_tune:
        return Reference(embedding, "persam", negatives=negatives)
    logits, targets = (fits[0][0], fits[0][1]) if len(fits) == 1 else ([f[0] for f in fits], [f[1] for f in fits])
    weights, losses = scale_aware_weights(logits, targets, iterations=iterations, callback=callback)
    return Reference(embedding, "persam_f", weights, losses, negatives)


def negative_embedding(sam, image, mask, mode: str = "mean") -> torch.Tensor:
    """A negative reference, embedded like the positives (``mode`` as theirs, so the priors compare) → (1, 1, C)."""
    array = as_uint8_image(image)
    features = encode_image(sam, array)
    grid = mask_on_grid(sam, as_uint8_mask(mask, array.shape[:2]), features.features.shape[-2:])
    return target_embedding(features.features, grid, mode)


def save_reference(reference: Reference, path) -> None:
    """Write a reference (PerSAM or PerSAM-F, with its negatives) to a .safetensors file, once, for workers that
    each load it."""
    from safetensors.torch import save_file

    tensors = {"embedding": reference.embedding.detach().float().cpu().contiguous()}
    for name in ("weights", "negatives"):
        if getattr(reference, name) is not None:
            tensors[name] = getattr(reference, name).detach().float().cpu().contiguous()
    save_file(tensors, str(path), metadata={"mode": reference.mode, "format": "persam_reference"})


def load_reference(path, device="cpu") -> Reference:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != "persam_reference" or metadata.get("mode") not in ("persam", "persam_f"):
            raise ValueError(f"{path}: not a PerSAM reference file (written by save_reference)")
        optional = {name: f.get_tensor(name) if name in f.keys() else None for name in ("weights", "negatives")}
        return Reference(f.get_tensor("embedding"), metadata["mode"], optional["weights"], negatives=optional["negatives"])
