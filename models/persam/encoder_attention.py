"""A memory-efficient attention for SAM's ViT image encoder, as a subclass of ``segment_anything``'s own.

The package materialises the whole attention map (batch·heads × N × N floats; at 1024² a global block of
ViT-B holds 12 × 4096 × 4096 × 4 bytes = 768 MiB, and the rel-pos sum and softmax make it three such
tensors). Here the decomposed relative-position bias (MViTv2; the package's ``add_decomposed_rel_pos``) is
built for a slice of query rows at a time and passed to ``torch.nn.functional.scaled_dot_product_attention``
as its additive mask, so only that slice of the bias exists and the fused kernel never writes the map.
Same weights, same result (to float rounding); enabled on loaded SAMs by ``enable_efficient_attention``.
"""

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

MASK_BUDGET = 256 * 2**20  # bytes of additive mask alive at once (larger slices run faster on CPU)


class EfficientRelPosAttention(Attention):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, h·w, head_dim)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = self.rel_pos_attention(q, k, v, h, w)
        out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)

    def rel_pos_attention(self, q, k, v, h, w):
        """Attention with the decomposed rel-pos bias as additive mask, ``rows`` query rows at a time."""
        rh, rw = get_rel_pos(h, h, self.rel_pos_h), get_rel_pos(w, w, self.rel_pos_w)
        b, heads, n, dim = q.shape
        row_bytes = b * heads * w * n * q.element_size()
        rows = max(1, min(h, MASK_BUDGET // max(1, row_bytes)))
        grid_q = q.view(b, heads, h, w, dim)
        out = []
        for top in range(0, h, rows):
            q_rows = grid_q[:, :, top : top + rows]  # (B, heads, r, w, dim)
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", q_rows, rh[top : top + rows])
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", q_rows, rw)
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2).flatten(2, 3)  # (B, heads, r·w, h·w)
            out.append(F.scaled_dot_product_attention(q_rows.flatten(2, 3), k, v, attn_mask=bias, scale=self.scale))
        return torch.cat(out, dim=2)


def enable_efficient_attention(sam) -> None:
    """Swap the image encoder's attention for ``EfficientRelPosAttention`` (same parameters)."""
    for block in sam.image_encoder.blocks:
        if type(block.attn) is Attention:
            block.attn.__class__ = EfficientRelPosAttention
