"""How the miniature DICEPTION starts: its own CLIP tokenizers and encoders (``clip_text_encoders``), a T5 that
answers zeros (``silent_t5``) and the transformer's positional routing (``positional_routing``).
docs/miniatures.md says why each is needed."""

import json
import math
import shutil
from pathlib import Path

import torch

SIZE = 128  # the miniature's image size (train.SIZE)


def clip_text_encoders(folder: Path) -> None:
    """The miniature's two CLIP tokenizers and text encoders (random, as the fixture's: only the transformer is trained).

    The fixture's tiny tokenizers (tests/tiny_models.py) give a character and its end-of-word form the same id for a
    third of the characters; saved, each id keeps one of the two, and the other becomes ``<|endoftext|>``. CLIP's
    pooled output is read at the first ``<|endoftext|>`` (and the fixture's configs name SD3's id 49407, which
    no id of these vocabularies reaches), so every DICEPTION prompt ("[[image2…") had the same pooled embedding. The
    pooled embedding is what conditions SD3's adaLN on the prompt, so the transformer could tell its tasks apart
    only through attention over 333 mostly equal text tokens. Here every printable character and its end-of-word form
    has its own id, ``<|endoftext|>`` is the last id, and the encoders' configs name it: each prompt gets its own
    pooled embedding."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    chars = [chr(i) for i in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    for number, (tokenizer, encoder, pad, hidden) in enumerate(
            (("tokenizer", "text_encoder", "<|endoftext|>", 16), ("tokenizer_2", "text_encoder_2", "!", 24))):
        for part in (tokenizer, encoder):
            if (folder / part).exists():
                shutil.rmtree(folder / part)
        (folder / tokenizer).mkdir(parents=True)
        (folder / tokenizer / "vocab.json").write_text(json.dumps(vocab))
        (folder / tokenizer / "merges.txt").write_text("#version: 0.2\n")
        tok = CLIPTokenizer(str(folder / tokenizer / "vocab.json"), str(folder / tokenizer / "merges.txt"), pad_token=pad)
        tok.model_max_length = 77
        tok.save_pretrained(folder / tokenizer)
        torch.manual_seed(100 + number)
        config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                                num_attention_heads=2, projection_dim=hidden, max_position_embeddings=77,
                                bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                                pad_token_id=vocab[pad])
        CLIPTextModelWithProjection(config).save_pretrained(folder / encoder)


def silent_t5(folder: Path) -> None:
    """The fixture's tiny T5 (``folder/text_encoder_3``) made to answer zeros: its final layer norm's weight is 0.

    Still a T5 encoder in the diffusers layout that every loader path reads and runs. The miniature reads its prompts
    through its CLIP encoders (tokens and pooled embedding; the fixture's random T5 told it nothing more), and with
    every T5 row zero the 256 T5 tokens are equal, so training computes them as one (``repeated_tokens``)."""
    from transformers import T5EncoderModel

    t5 = T5EncoderModel.from_pretrained(folder / "text_encoder_3")
    with torch.no_grad():
        t5.encoder.final_layer_norm.weight.zero_()
    shutil.rmtree(folder / "text_encoder_3")
    t5.save_pretrained(folder / "text_encoder_3")


def positional_routing(transformer, heads: int, gain: float) -> None:
    """Start ``heads`` attention heads of every block attending by position, so that a noisy latent token sees its
    condition-image twin (same position, same sin-cos embedding) from the first step.

    From diffusers' random initialisation the transformer never learnt to read the condition image here (three runs:
    docs/miniatures.md): each token's attention is spread over ~470 keys, its twin's share is 1/470, and the
    gradient that would route it is as small. A trained SD3 routes by position; this gives the miniature that start:

    - the patch embedding's content is projected out of the positional subspace (the span of the grid's centred
      sin-cos vectors, and the all-ones direction that LayerNorm removes), so that position and content are
      separable after the block's LayerNorm;
    - those heads' queries and keys are the whitened positional coordinates (scaled by ``gain``) minus their mean:
      their logit is largest for the same position (self and twin), lower for the same row or column, lowest
      elsewhere; text and point keys start near 0;
    - the attention's adaLN shift and scale start at 0 and its gate at 1 (the attention output is used from step 1).

    Measured at step 0 (block 0, 128² images): each routing head gives the twin about a third of its attention; on
    diffusers' init the twin gets ~0.002."""
    with torch.no_grad():
        size = SIZE // 8
        grid = transformer.pos_embed.cropped_pos_embed(size, size)[0].float()
        dim, head_dim = grid.shape[1], transformer.config.attention_head_dim
        _, singular, basis = torch.linalg.svd(grid - grid.mean(0), full_matrices=False)
        rank = int((singular > 0.02 * singular[0]).sum())
        basis, singular = basis[:rank], singular[:rank]
        span, _ = torch.linalg.qr(torch.cat([basis, torch.ones(1, dim) / math.sqrt(dim)]).T)
        outside = torch.eye(dim) - span @ span.T
        embed = transformer.pos_embed.proj
        embed.weight.copy_(torch.einsum("de,ecij->dcij", outside, embed.weight))
        embed.bias.copy_(outside @ embed.bias)
        whiten = basis / singular[:, None] * math.sqrt(len(grid) * gain)
        probe = torch.randn(8, transformer.config.in_channels, size, size, generator=torch.Generator().manual_seed(5))
        normed = torch.nn.functional.layer_norm(transformer.pos_embed(probe), (dim,), eps=1e-6)
        for block in transformer.transformer_blocks:
            for linear in (block.attn.to_q, block.attn.to_k):
                for h in range(heads):
                    part = slice(h * head_dim, (h + 1) * head_dim)
                    linear.weight[part] = 0
                    linear.weight[h * head_dim : h * head_dim + rank] = whiten
                    linear.bias[part] = -(normed @ linear.weight[part].T).mean((0, 1))
            modulation = block.norm1.linear  # rows: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
            modulation.weight[: 3 * dim] = 0
            modulation.bias[: 2 * dim] = 0
            modulation.bias[2 * dim : 3 * dim] = 1
