"""DICEPTION's forward pass through diffusers' ``SD3Transformer2DModel``.

Differences from SD3 (as in the official ``NewSD3Transformer2DModel``): the condition image's latents
are patch-embedded with the same ``pos_embed`` and appended to the noisy latent tokens; the point
tokens are appended to the context *after* ``context_embedder``; only the noisy half of the output
tokens is unpatchified.
"""

import torch
import torch.utils.checkpoint
from diffusers import SD3Transformer2DModel


def diception_forward(
    transformer: SD3Transformer2DModel,
    latents: torch.Tensor,
    cond_latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    pooled_embeds: torch.Tensor,
    point_embeds: torch.Tensor,
    timestep: torch.Tensor,
    checkpointing: bool = False,
) -> torch.Tensor:
    """Velocity prediction (B, C, h, w) for noisy ``latents`` given the condition image's latents.

    ``checkpointing``: recompute each block's activations in the backward pass (training) instead of keeping them;
    the blocks are called here, so diffusers' own gradient-checkpointing flag has no effect on this forward."""
    height, width = latents.shape[-2:]
    noisy_tokens = transformer.pos_embed(latents)
    num_noisy = noisy_tokens.shape[1]
    hidden = torch.cat([noisy_tokens, transformer.pos_embed(cond_latents)], dim=1).contiguous()

    temb = transformer.time_text_embed(timestep, pooled_embeds)
    context = torch.cat([transformer.context_embedder(prompt_embeds), point_embeds], dim=1)
    for block in transformer.transformer_blocks:
        if checkpointing and torch.is_grad_enabled():
            context, hidden = torch.utils.checkpoint.checkpoint(run_block, block, hidden, context, temb, use_reentrant=False)
        else:
            context, hidden = run_block(block, hidden, context, temb)

    hidden = transformer.proj_out(transformer.norm_out(hidden, temb))[:, :num_noisy]
    return unpatchify(hidden, height, width, transformer.config.patch_size, transformer.out_channels)


def run_block(block, hidden, context, temb):
    return block(hidden_states=hidden, encoder_hidden_states=context, temb=temb)


def unpatchify(tokens: torch.Tensor, height: int, width: int, patch: int, channels: int) -> torch.Tensor:
    h, w = height // patch, width // patch
    x = tokens.reshape(tokens.shape[0], h, w, patch, patch, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(tokens.shape[0], channels, h * patch, w * patch)
