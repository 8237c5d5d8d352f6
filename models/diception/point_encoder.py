"""DICEPTION's point prompts: SAM-style random Fourier features, an MLP, and a seg/not-seg embedding."""

import math

import torch
from torch import nn

FOURIER_FEATURES = 1024


class PointEncoder(nn.Module):
    """Five point slots → five context tokens appended after the text tokens.

    ``p' = 2p − 1``; features ``[sin 2πp'G, cos 2πp'G]`` with ``G`` a fixed 2×1024 Gaussian matrix;
    then ``Linear(2048, 2048) – GELU – Linear(2048, D)``; plus the learned ``seg`` embedding for slots
    that hold a point (label 1) or ``not_seg`` for empty slots (label 0).
    Attribute names follow the official checkpoint so its tensors load strictly.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, FOURIER_FEATURES))
        self.point_embedder = nn.Sequential(
            nn.Linear(2 * FOURIER_FEATURES, 2 * FOURIER_FEATURES), nn.GELU(), nn.Linear(2 * FOURIER_FEATURES, dim)
        )
        self.not_seg_embeddings = nn.Embedding(1, dim)
        self.seg_embeddings = nn.Embedding(1, dim)

    def forward(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """points (B, 5, 2) in [0, 1], labels (B, 5) of 0/1 → (B, 5, D) in the module's dtype.

        Every operation runs in the module's dtype, as the official code does (bf16 there).
        """
        gaussian = self.positional_encoding_gaussian_matrix
        p = 2 * points.to(gaussian.dtype) - 1.0
        p = 2 * math.pi * (p @ gaussian)
        embedding = self.point_embedder(torch.cat([torch.sin(p), torch.cos(p)], dim=-1))
        is_point = (labels.reshape(embedding.shape[:2]) == 1).unsqueeze(-1)
        return embedding + torch.where(is_point, self.seg_embeddings.weight, self.not_seg_embeddings.weight)
