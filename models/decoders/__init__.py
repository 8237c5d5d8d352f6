"""From DICEPTION's RGB answers to the quantities behind them (pure torch/numpy, batch-aware, any size).

- ``depth``: channel mean → disparity (near = bright, affine-invariant); relative depth, normalisation,
  least-squares alignment to known depth.
- ``normals``: ``n = 2·rgb − 1``, unit length, axis conventions.
- ``masks``: thresholded masks; instances of colour-coded entity/semantic maps.
- ``keypoints``: best-effort OpenPose joints from rendered skeletons.
- ``colormaps``: previews.
"""

from .colormaps import COLORMAPS, colorize
from .depth import align_depth, decode_depth, normalize, to_depth
from .keypoints import decode_keypoints
from .masks import EDGE_TOLERANCE, MERGE_TOLERANCE, decode_instances, decode_mask, photo_per_answer
from .normals import CONVENTIONS, decode_normals, encode_normals
