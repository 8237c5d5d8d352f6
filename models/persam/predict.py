"""One prompted SAM decoder pass on cached image features (SamPredictor.predict, plus PerSAM's guidance)."""

from dataclasses import dataclass, field
from typing import Optional

import torch
from segment_anything.utils.transforms import ResizeLongestSide


@dataclass
class Prediction:
    """One decoder pass. Only the low-resolution logits are kept: the full-size logits and masks are made from
    them when asked for, ONE channel at a time (SAM's ``postprocess_masks`` treats channels independently, so the
    values are those of the whole stack), so a pass costs no more than one float map of the image's size
    (a 12000x12000 image: 576 MB, not 1.7 GB per pass for three masks)."""

    scores: torch.Tensor  # (N,)
    logits: torch.Tensor  # (N, 256, 256) low-res
    sam: object = field(repr=False)
    input_size: tuple = ()
    original_size: tuple = ()

    def best(self) -> int:
        return int(self.scores.argmax())

    def logit_high(self, i: int) -> torch.Tensor:
        """(H, W) full-size logits of mask ``i``."""
        return self.sam.postprocess_masks(self.logits[None, i : i + 1], self.input_size, self.original_size)[0, 0]

    def mask(self, i: int) -> torch.Tensor:
        """(H, W) bool: mask ``i`` at the image's size."""
        return self.logit_high(i) > self.sam.mask_threshold

    @property
    def masks(self) -> torch.Tensor:  # (N, H, W) bool
        return torch.stack([self.mask(i) for i in range(len(self.logits))])

    @property
    def logits_high(self) -> torch.Tensor:  # (N, H, W)
        return torch.stack([self.logit_high(i) for i in range(len(self.logits))])


@torch.no_grad()
def predict(sam, image, points, labels, box=None, mask_input=None, multimask=True,
            attn_sim: Optional[torch.Tensor] = None, target_embedding: Optional[torch.Tensor] = None) -> Prediction:
    """``points`` (N, 2) as (x, y) pixels (or None) of the original image, ``box`` (x0, y0, x1, y1), ``mask_input`` (1, 256, 256)."""
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    device = sam.device
    prompt_points = None
    if points is not None and len(points):
        coords = transform.apply_coords_torch(points.to(device, torch.float32), image.original_size)[None]
        prompt_points = (coords, labels.to(device)[None])
    boxes = None
    if box is not None:
        boxes = transform.apply_boxes_torch(torch.as_tensor(box, device=device, dtype=torch.float32)[None], image.original_size)
    masks_in = None if mask_input is None else mask_input.to(device)[None]
    sparse, dense = sam.prompt_encoder(points=prompt_points, boxes=boxes, masks=masks_in)
    low_res, iou = sam.mask_decoder(
        image_embeddings=image.features, image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
        attn_sim=attn_sim, target_embedding=target_embedding,
    )
    return Prediction(iou[0], low_res[0], sam, image.input_size, image.original_size)


def mask_box(mask: torch.Tensor):
    """Bounding box (x0, y0, x1, y1) of a mask, or None when it is empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return None
    return torch.stack([xs.min(), ys.min(), xs.max(), ys.max()])
