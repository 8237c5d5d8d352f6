"""PerSAM's two additions to SAM's mask decoder, as subclasses of ``segment_anything``'s own modules.

- **Target-guided attention**: in every two-way block, token→image cross-attention becomes
  ``softmax(softmax(QKᵀ/√d) + attn_sim)`` (not in the final attention layer).
- **Target-semantic prompting**: the target embedding is added to the decoder queries before each block and
  to the final attention's queries.

The official code adds the target embedding to the queries *in place*; before the first block the queries
and the point positional embedding are the same tensor, so the query positional embedding carries
``+target`` in every block and the final attention's q gets ``+2·target``. We reproduce that explicitly
(``query_pe = point_embedding + target``) because PerSAM was evaluated that way; a clean variant differs by
up to 4e-3 in the logits.
"""

import math

import torch
from segment_anything.modeling.mask_decoder import MaskDecoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer


class GuidedAttention(Attention):
    def forward(self, q, k, v, attn_sim=None):
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        attn = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1]), dim=-1)
        if attn_sim is not None:
            attn = target_guided_attention(attn, attn_sim)
        return self.out_proj(self._recombine_heads(attn @ v))


def target_guided_attention(attn: torch.Tensor, attn_sim: torch.Tensor) -> torch.Tensor:
    """Re-weight token→image attention towards the target: ``softmax(attn + attn_sim)``."""
    return torch.softmax(attn + attn_sim, dim=-1)


class GuidedTwoWayAttentionBlock(TwoWayAttentionBlock):
    def forward(self, queries, keys, query_pe, key_pe, attn_sim=None):
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys, attn_sim=attn_sim))
        queries = self.norm3(queries + self.mlp(queries))

        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class GuidedTwoWayTransformer(TwoWayTransformer):
    def forward(self, image_embedding, image_pe, point_embedding, attn_sim=None, target_embedding=None):
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries, query_pe = point_embedding, point_embedding
        if target_embedding is not None:  # the official in-place add: see the module docstring
            query_pe = point_embedding + target_embedding
        for layer in self.layers:
            queries = target_semantic_prompt(queries, target_embedding)
            queries, keys = layer(queries=queries, keys=keys, query_pe=query_pe, key_pe=image_pe, attn_sim=attn_sim)
        q = target_semantic_prompt(queries + query_pe, target_embedding)
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=keys + image_pe, v=keys))
        return queries, keys


def target_semantic_prompt(queries: torch.Tensor, target_embedding) -> torch.Tensor:
    """Add the target's embedding to the decoder's queries (a semantic cue beside the point prompts)."""
    return queries if target_embedding is None else queries + target_embedding


class GuidedMaskDecoder(MaskDecoder):
    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output, attn_sim=None, target_embedding=None):
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, attn_sim, target_embedding
        )
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou_pred[:, chosen]

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                      attn_sim=None, target_embedding=None):
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0) + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens, attn_sim, target_embedding)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]

        upscaled = self.output_upscaling(src.transpose(1, 2).view(b, c, h, w))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)


def enable_target_guidance(sam) -> None:
    """Give a loaded ``Sam`` PerSAM's decoder (same weights; without guidance inputs it is SAM's decoder)."""
    decoder = sam.mask_decoder
    decoder.__class__ = GuidedMaskDecoder
    decoder.transformer.__class__ = GuidedTwoWayTransformer
    for layer in decoder.transformer.layers:
        layer.__class__ = GuidedTwoWayAttentionBlock
        layer.cross_attn_token_to_image.__class__ = GuidedAttention
