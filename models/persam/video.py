"""Video: the previous frame's result as a prompt for the next frame of the same shot.

As the official ``persam_video.py`` does: the previous frame's mask box, grown by ``BOX_MARGIN`` pixels on
every side (clipped to the image), prompts the first decoder pass together with the location-prior points
and the box's centre as one more positive point. A cut to another shot breaks the assumption; segment each
shot separately.
"""

import torch

BOX_MARGIN = 10  # pixels, the official default (``--threshold 10``)


def carried_prompt(points: torch.Tensor, labels: torch.Tensor, previous_box, height: int, width: int):
    """Location-prior ``points``/``labels`` + the previous frame's box → (points, labels, box) for pass 1.
    ``previous_box`` (x0, y0, x1, y1) pixels or None (then the prompt is unchanged and box is None)."""
    if previous_box is None:
        return points, labels, None
    x0, y0, x1, y1 = (float(v) for v in previous_box)
    box = torch.tensor([max(0.0, x0 - BOX_MARGIN), max(0.0, y0 - BOX_MARGIN),
                        min(width - 1.0, x1 + BOX_MARGIN), min(height - 1.0, y1 + BOX_MARGIN)])
    centre = torch.tensor([[int((box[0] + box[2]) // 2), int((box[1] + box[3]) // 2)]], dtype=points.dtype)
    return torch.cat([points, centre]), torch.cat([labels, labels.new_ones(1)]), box
