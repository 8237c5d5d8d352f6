"""Colour maps for previews, as piecewise-linear interpolation between anchors of the published palettes."""

import torch

ANCHORS = {
    "Spectral": ["9e0142", "d53e4f", "f46d43", "fdae61", "fee08b", "ffffbf", "e6f598", "abdda4", "66c2a5", "3288bd", "5e4fa2"],
    "inferno": ["000004", "1b0c41", "4a0c6b", "781c6d", "a52c60", "cf4446", "ed6925", "fb9b06", "f7d13d", "fcffa4"],
    "turbo": ["30123b", "4662d7", "36aaf9", "1ae4b6", "72fe5e", "c8ef34", "faba39", "f66b19", "ca2a04", "7a0403"],
    "gray": ["000000", "ffffff"],
}
COLORMAPS = tuple(ANCHORS)


def colorize(values: torch.Tensor, name: str = "Spectral") -> torch.Tensor:
    """(B, H, W) values in [0, 1] → (B, H, W, 3) colours."""
    if name not in ANCHORS:
        raise ValueError(f"colormap: expected one of {list(ANCHORS)}, got {name!r}")
    table = torch.tensor([[int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)] for h in ANCHORS[name]])
    x = values.clamp(0, 1) * (len(table) - 1)
    lo = x.floor().long().clamp(max=len(table) - 2)
    frac = (x - lo).unsqueeze(-1)
    return table[lo] * (1 - frac) + table[lo + 1] * frac
