"""Training the miniature with its 256 T5 tokens computed as one (exact, 2.7× faster a step on 2 threads).

The miniature's T5 answers zeros (``initialisation.silent_t5``), so the 256 T5 rows of every prompt embedding are
equal. SD3's context tokens carry no position embedding, so equal tokens stay equal through every joint block
(each is projected, normalised and attended from alike), and attention over ``n`` equal keys is attention over one of
them with ``ln n`` added to its logit. So training keeps one T5 row (``collapse_t5``) and gives that key the
``ln 256`` bias (``RepeatedKeyAttention``): the same function as the full 333-token context the pack's pipeline
feeds it, at 78 + 5 context tokens instead of 333 + 5 (measured: the largest difference of a one-step answer
1.5e-4 in float32, on answers of size 2; ``tests/test_diception_miniature.py`` checks it).
"""

import math

import torch
import torch.nn.functional as F

from models.diception.prompts import CLIP_TOKENS, T5_TOKENS


def collapse_t5(prompt_embeds: torch.Tensor) -> torch.Tensor:
    """(B, 77 + 256, D) prompt embeddings whose T5 rows are all zero → (B, 78, D): the CLIP rows and one T5 row."""
    t5 = prompt_embeds[:, CLIP_TOKENS:]
    if t5.shape[1] != T5_TOKENS or bool(t5.any()):
        raise ValueError("collapse_t5: the prompt's T5 rows are not all zero; only a silent T5 (silent_t5) collapses")
    return prompt_embeds[:, : CLIP_TOKENS + 1]


class RepeatedKeyAttention:
    """diffusers' ``JointAttnProcessor2_0`` over [image tokens, context tokens], where context token ``CLIP_TOKENS``
    stands for ``T5_TOKENS`` equal tokens (its attention logit + ln 256)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        batch, image_tokens = hidden_states.shape[:2]

        def heads(x, norm=None):
            x = x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
            return norm(x) if norm is not None else x

        query = torch.cat([heads(attn.to_q(hidden_states), attn.norm_q),
                           heads(attn.add_q_proj(encoder_hidden_states), attn.norm_added_q)], 2)
        key = torch.cat([heads(attn.to_k(hidden_states), attn.norm_k),
                         heads(attn.add_k_proj(encoder_hidden_states), attn.norm_added_k)], 2)
        value = torch.cat([heads(attn.to_v(hidden_states)), heads(attn.add_v_proj(encoder_hidden_states))], 2)
        bias = torch.zeros(key.shape[2], dtype=query.dtype, device=query.device)
        bias[image_tokens + CLIP_TOKENS] = math.log(T5_TOKENS)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.expand(query.shape[2], -1))
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * out.shape[-1]).to(query.dtype)
        image, context = out[:, :image_tokens], out[:, image_tokens:]
        if not attn.context_pre_only:
            context = attn.to_add_out(context)
        return attn.to_out[1](attn.to_out[0](image)), context


def use_repeated_t5(transformer) -> None:
    """Every joint block of ``transformer`` attends with ``RepeatedKeyAttention`` (feed it ``collapse_t5`` prompts)."""
    for block in transformer.transformer_blocks:
        block.attn.set_processor(RepeatedKeyAttention())
