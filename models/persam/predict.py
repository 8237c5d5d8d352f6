"""One prompted SAM decoder pass on cached image features (SamPredictor.predict, plus PerSAM's guidance)."""

from dataclasses import dataclass
from typing import Optional

import torch
from segment_anything.utils.transforms import ResizeLongestSide


@dataclass
class Prediction:
    masks: torch.Tensor  # (N, H, W) bool
    scores: torch.Tensor  # (N,)
    logits: torch.Tensor  # (N, 256, 256) low-res
    logits_high: torch.Tensor  # (N, H, W)

    def best(self) -> int:
        return int(self.scores.argmax())


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
    high = sam.postprocess_masks(low_res, image.input_size, image.original_size)
    return Prediction(high[0] > sam.mask_threshold, iou[0], low_res[0], high[0])


def mask_box(mask: torch.Tensor):
    """Bounding box (x0, y0, x1, y1) of a mask, or None when it is empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return None
    return torch.stack([xs.min(), ys.min(), xs.max(), ys.max()])
