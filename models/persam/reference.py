"""The personalised reference: image(s) + mask(s) → the target's embedding(s) (and PerSAM-F's weights).

One reference is the official one-shot PerSAM. Several positive references keep one target embedding each
(the location prior takes, per pixel, the best match over them); negative references are embeddings of what
must not be selected (a look-alike). See ``location_prior.reference_prior``.
"""

from dataclasses import dataclass
from typing import Optional

import torch

from ..host import Host
from ..inputs import InputError
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


def build_reference(sam, images, masks=None, boxes=None, negative_images=(), negative_masks=(), fine_tune=False,
                    iterations=1000, host: Optional[Host] = None) -> Reference:
    """PerSAM Reference: every check of the operation, then the reference (``make_reference_set``).

    ``images``: the reference images, (H, W, 3) each (sizes may differ); ``masks``: one mask per image (pixels
    ≥ 0.5 are the subject), a mask may be None or empty where ``boxes`` gives that image's box; ``boxes``: one
    box per image, as text ('x0, y0, x1, y1' in pixels, one line per image, an empty line: use that image's mask)
    or a list of such strings / 4-tuples / None; SAM segments the box. ``negative_images`` / ``negative_masks``:
    a look-alike that must not be selected (both or neither, one mask per image; a negative mask on one of the
    reference photos must not cover the subject's mask given for that photo). The ``host`` prepares the SAM and
    sees the progress of PerSAM-F's fit."""
    host = host if host is not None else Host()
    pictures = list(images)
    if not pictures:
        raise InputError("image: expected at least one image, got an empty list")
    masks = list(masks) if masks is not None else [None] * len(pictures)
    if len(masks) != len(pictures):
        raise InputError(
            f"mask: {len(masks)} mask(s) for {len(pictures)} reference image(s); give one mask per image, in the "
            "same order (a MASK batch of the same length, or a list of masks beside a list of images)"
        )
    lines = box_lines(boxes)
    if lines and len(lines) != len(pictures):
        raise InputError(
            f"box: {len(lines)} line(s) for {len(pictures)} reference image(s); give one line 'x0, y0, x1, y1' per "
            "image (an empty line uses that image's mask)"
        )
    for i, (picture, subject) in enumerate(zip(pictures, masks)):
        if subject is not None and tuple(subject.shape) != tuple(picture.shape[:2]):
            raise InputError(
                f"mask: the mask{which(i, len(pictures))} ({subject.shape[1]}x{subject.shape[0]}) differs from the "
                f"image's size ({picture.shape[1]}x{picture.shape[0]}); draw each mask on its own image (ComfyUI's "
                "mask editor) or resize it to that image first"
            )
    host.prepare("sam", [sam])
    features, subjects, painted = [None] * len(pictures), [], []
    for i, (picture, subject) in enumerate(zip(pictures, masks)):
        if subject is None or not bool((torch.as_tensor(subject) >= 0.5).any()):
            line = lines[i] if lines else None
            if line is None or (isinstance(line, str) and not line.strip()):
                where = which(i, len(pictures))
                raise InputError(
                    f"mask: the reference mask is empty (or missing){where} and no box is given for it; paint the "
                    "subject" + (f", give its box on line {i + 1} of box, or leave that image out" if where else " or give a box")
                )
            features[i] = encode_image(sam, picture)
            found = predict(sam, features[i], None, None, box=parse_box(line, picture.shape[1], picture.shape[0]))
            subject = found.mask(found.best()).float().cpu()
        else:
            painted.append((i, picture, subject))
        subjects.append(subject)
    negatives, negative_subjects = check_negatives(negative_images, negative_masks, painted)
    return make_reference_set(sam, pictures, subjects, negatives, negative_subjects, fine_tune=fine_tune,
                              iterations=iterations, features=features, callback=host.progress)


def which(i: int, count: int) -> str:
    return f" of reference image {i + 1} of {count}" if count > 1 else ""


def box_lines(boxes) -> list:
    """``boxes`` (text, one line per image; or a list) → a list with one entry per line ([] when no box is given)."""
    if boxes is None:
        return []
    if isinstance(boxes, str):
        return boxes.splitlines() if boxes.strip() else []
    return list(boxes)


def parse_box(box, width: int, height: int) -> torch.Tensor:
    """'x0, y0, x1, y1' in pixels (or 4 numbers) → a (4,) tensor, inside a ``width``×``height`` image."""
    values = [v for v in box.replace(";", ",").split(",") if v.strip()] if isinstance(box, str) else list(box)
    try:
        x0, y0, x1, y1 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"box: expected 'x0, y0, x1, y1' in pixels, got {box!r}") from None
    if not (0 <= x0 < x1 <= width - 1 and 0 <= y0 < y1 <= height - 1):
        raise InputError(f"box: ({x0:g}, {y0:g}, {x1:g}, {y1:g}) must satisfy 0 ≤ x0 < x1 < {width}, 0 ≤ y0 < y1 < {height}")
    return torch.tensor([x0, y0, x1, y1])


def check_negatives(negative_images, negative_masks, painted):
    """Negative images and masks (both or neither), one mask per image; a negative mask on one of the reference
    photos must not cover the subject's mask given for that photo (``painted``: (index, image, mask); masks that
    SAM made from a box are not checked). → (images, masks) as lists."""
    no_images, no_masks = negative_images is None or not len(negative_images), negative_masks is None or not len(negative_masks)
    if no_images and no_masks:
        return [], []
    if no_images or no_masks:
        missing = "negative_masks" if no_masks else "negative_images"
        raise InputError(f"{missing}: negative images and negative masks go together; connect both or neither")
    images, masks = list(negative_images), list(negative_masks)
    if len(images) != len(masks):
        raise InputError(f"negative_masks: {len(masks)} mask(s) for {len(images)} negative image(s); give one mask per image, in order")
    for j, (image, mask) in enumerate(zip(images, masks)):
        if tuple(mask.shape) != tuple(image.shape[:2]):
            raise InputError(
                f"negative_masks: mask {j + 1} is {mask.shape[1]}x{mask.shape[0]} but negative image {j + 1} is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        if not bool((mask >= 0.5).any()):
            raise InputError(f"negative_masks: mask {j + 1} is empty; paint the look-alike in negative image {j + 1} or leave it out")
        for i, picture, subject in painted:
            if picture.shape == image.shape and torch.equal(torch.as_tensor(picture), torch.as_tensor(image)):
                overlap = int(((mask >= 0.5) & (torch.as_tensor(subject).to(mask.device) >= 0.5)).sum())
                if overlap:
                    raise InputError(
                        f"negative_masks: mask {j + 1} covers {overlap} pixel(s) of the subject's mask in reference image "
                        f"{i + 1} (the same photo); a pixel cannot be both the subject and not the subject: erase the "
                        "overlap from one of the masks"
                    )
    return images, masks


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
