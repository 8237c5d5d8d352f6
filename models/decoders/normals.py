"""Surface normals from DICEPTION's normal answers: trained as ``(n + 1)/2`` per channel.

Axis convention (as decoded; DICEPTION inherits it from its training data, which colours normals the
common way): camera space, **+X right (red), +Y up (green), +Z towards the viewer (blue)**, i.e. the
OpenGL convention; a surface facing the camera is (0, 0, 1) → RGB (0.5, 0.5, 1.0), the usual light blue.
Other conventions flip axes: DirectX (+Y down), and ControlNet's NormalBAE maps (+X left).
"""

import torch

from .validation import check_rgb

CONVENTIONS = {
    "OpenGL (as decoded)": (1, 1, 1),
    "DirectX (+Y down)": (1, -1, 1),
    "ControlNet NormalBAE (+X left)": (-1, 1, 1),
}


def decode_normals(images: torch.Tensor, convention: str = "OpenGL (as decoded)") -> torch.Tensor:
    """(B, H, W, 3) answers → (B, H, W, 3) unit normals ``normalize(2·rgb − 1)`` in ``convention``.
    Pixels whose vector is ~0 (no information) decode to (0, 0, 1)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {list(CONVENTIONS)}, got {convention!r}")
    n = 2 * check_rgb(images) - 1
    length = n.norm(dim=-1, keepdim=True)
    n = torch.where(length > 1e-6, n / length.clamp(min=1e-6), torch.tensor([0.0, 0.0, 1.0]))
    return n * torch.tensor(CONVENTIONS[convention], dtype=n.dtype)


def encode_normals(normals: torch.Tensor) -> torch.Tensor:
    """Unit normals → the ``(n + 1)/2`` colouring (for previews and normal-map ControlNets)."""
    return ((normals + 1) / 2).clamp(0, 1)
