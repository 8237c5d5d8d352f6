"""Prompt encoding exactly as diffusers' SD3 pipeline, and an on-disk cache of its results.

``prompt_embeds`` = [CLIP-L ⊕ CLIP-G penultimate hidden states (77 tokens), zero-padded to the T5 width]
followed by 256 T5 tokens; ``pooled`` = CLIP-L ⊕ CLIP-G text projections. No attention masks.

DICEPTION's prompts are a small fixed set, so their embeddings are cached per prompt and per text-encoder
identity; when every prompt a run needs is cached, the text encoders (72 % of SD3's weights) are never
constructed.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..publish import remove, temporary_name

CLIP_TOKENS = 77
T5_TOKENS = 256


@dataclass
class TextEncoders:
    tokenizer: object
    tokenizer_2: object
    tokenizer_3: object
    text_encoder: torch.nn.Module
    text_encoder_2: torch.nn.Module
    text_encoder_3: torch.nn.Module

    def modules(self):
        return [self.text_encoder, self.text_encoder_2, self.text_encoder_3]


def tokenize(encoders: TextEncoders, prompt: str) -> dict:
    """Token ids for CLIP-L, CLIP-G and T5 (padded to max length, truncated)."""

    def ids(tokenizer, length):
        out = tokenizer([prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        return out.input_ids

    return {
        "clip_l": ids(encoders.tokenizer, CLIP_TOKENS),
        "clip_g": ids(encoders.tokenizer_2, CLIP_TOKENS),
        "t5": ids(encoders.tokenizer_3, T5_TOKENS),
    }


@torch.no_grad()
def encode_prompt(encoders: TextEncoders, prompt: str):
    """One prompt → (prompt_embeds (1, 333, D_t5), pooled (1, D_l + D_g))."""
    ids = tokenize(encoders, prompt)
    hidden, pooled = [], []
    for key, encoder in (("clip_l", encoders.text_encoder), ("clip_g", encoders.text_encoder_2)):
        out = encoder(ids[key].to(encoder.device), output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled.append(out[0])
    t5 = encoders.text_encoder_3
    t5_embeds = t5(ids["t5"].to(t5.device))[0].to(t5.dtype)
    clip_embeds = torch.cat(hidden, dim=-1).to(encoders.text_encoder.dtype)
    clip_embeds = torch.nn.functional.pad(clip_embeds, (0, t5_embeds.shape[-1] - clip_embeds.shape[-1]))
    clip_embeds = clip_embeds.to(t5_embeds.device)
    return torch.cat([clip_embeds, t5_embeds], dim=-2), torch.cat(pooled, dim=-1)


class PromptCache:
    """``(prompt_embeds, pooled)`` per prompt, as safetensors files under ``root/<encoder identity>/``; the ``KEPT``
    entries read last stay in memory (keyed by the file's inode, size and modification time) so that a run does
    not re-read its files (SD3-medium: 2.7 MB per prompt in bf16)."""

    KEPT = 16

    def __init__(self, root, identity: str):
        self.folder = Path(root) / identity[:24]
        self.identity = identity
        self._read = {}  # path → (the file's stat key, its tensors), the KEPT most recent: read again only when changed

    def _path(self, prompt: str) -> Path:
        return self.folder / (hashlib.sha256(prompt.encode()).hexdigest()[:24] + ".safetensors")

    def get(self, prompt: str):
        path = self._path(prompt)
        try:
            stat = path.stat()
        except OSError:
            self._read.pop(path, None)
            return None
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        kept = self._read.get(path)
        if kept is not None and kept[0] == key:
            self._read[path] = self._read.pop(path)  # most recent last
            return kept[1]
        try:
            tensors = load_file(str(path))
            found = tensors["prompt_embeds"], tensors["pooled"]
        except Exception:  # a damaged cache entry is recomputed, never fatal
            return None
        self._read[path] = (key, found)
        while len(self._read) > self.KEPT:
            self._read.pop(next(iter(self._read)))
        return found

    def put(self, prompt: str, prompt_embeds: torch.Tensor, pooled: torch.Tensor) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(prompt)
        # a name of this writer's own: two processes (Ray workers, servers sharing a cache) may write one entry at once,
        # and a shared ".tmp" name made the second one's rename fail (the first had taken the file)
        tmp = temporary_name(self.folder, path.name)
        tensors = {"prompt_embeds": prompt_embeds.detach().cpu().contiguous(), "pooled": pooled.detach().cpu().contiguous()}
        try:
            save_file(tensors, str(tmp), metadata={"prompt": prompt, "text_encoders": self.identity})
            tmp.replace(path)  # the same prompt and encoders give the same entry: whichever writer lands last is right
        finally:
            remove(tmp)
        self.get(prompt)  # kept: the next run finds it without reading the file


def encoder_identity(files, dtype: torch.dtype) -> str:
    """A cheap fingerprint of text-encoder weight/config/tokenizer files (names, sizes, first/last MiB) and dtype."""
    digest = hashlib.sha256(str(dtype).encode())
    for path in sorted(Path(f) for f in files):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(1 << 20))
            if stat.st_size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                digest.update(fh.read())
    return digest.hexdigest()

