"""The miniature DICEPTION's files, in the official formats every loader path of the pack reads: ``weights/base`` (an
SD3 diffusers folder), ``weights/diception_miniature.safetensors`` (the DICEPTION checkpoint's parts, flattened as
the pack's converter writes them), ``weights/train.log.json``; and snapshots of a run in progress. Every file is
written crash-safe (models/publish.py)."""

import copy
import json
import shutil
import tempfile
from pathlib import Path

import torch

from models.diception.checkpoint import flatten
from models.publish import deterministic_safetensors, replace_file, replace_folder
from scripts.miniature_diception.initialisation import clip_text_encoders, silent_t5

WEIGHTS = Path(__file__).resolve().parent / "weights"
BASE = WEIGHTS / "base"
CHECKPOINT = WEIGHTS / "diception_miniature.safetensors"
LOG = WEIGHTS / "train.log.json"


def build_base(vae, transformer, folder: Path) -> Path:
    """An SD3 diffusers folder: the fixture's tiny T5 made to answer zeros (``silent_t5``) and its tokenizer
    (tests/tiny_models.py), the miniature's own CLIP tokenizers and encoders (``clip_text_encoders``), SD3's scheduler,
    the trained VAE and ``transformer`` (at its initialisation: the untrained baseline), all fp16."""
    from tests.tiny_models import build_sd3_folder

    with tempfile.TemporaryDirectory() as tmp:
        fixture = build_sd3_folder(Path(tmp))
        folder.mkdir(parents=True, exist_ok=True)
        for part in ("text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3", "scheduler"):
            shutil.copytree(fixture / part, folder / part)
        shutil.copy(fixture / "model_index.json", folder / "model_index.json")
    clip_text_encoders(folder)
    silent_t5(folder)
    vae.to(torch.float16).save_pretrained(folder / "vae")
    vae.float()
    transformer.to(torch.float16).save_pretrained(folder / "transformer")
    return folder


def write_checkpoint(transformer, point_encoder, path: Path) -> None:
    """The DICEPTION checkpoint's five parts (as ``DICEPTION_v1.pth`` holds them), flattened into ``.safetensors``
    (the pack's converter's layout), fp16, written crash-safe."""
    sd = point_encoder.state_dict()
    parts = {
        "transformer": {k: v for k, v in transformer.state_dict().items() if k != "pos_embed.pos_embed"},
        "point_embedder": {k[len("point_embedder."):]: v for k, v in sd.items() if k.startswith("point_embedder.")},
        "not_seg_embeddings": {"weight": sd["not_seg_embeddings.weight"]},
        "seg_embeddings": {"weight": sd["seg_embeddings.weight"]},
        "positional_encoding_gaussian_matrix": sd["positional_encoding_gaussian_matrix"],
    }
    flat = {k: v.detach().to(torch.float16).contiguous() for k, v in flatten(parts).items()}
    blob = deterministic_safetensors(flat, {"format": "pt", "trained_by": "scripts/miniature_diception/train.py"})
    replace_file(path, lambda f: f.write(blob))


def snapshot(transformer, point_encoder, folder: Path) -> None:
    """The current miniature as a complete base folder + checkpoint in ``folder``, replaced atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)

    def build(temp: Path) -> None:
        shutil.copytree(BASE, temp / "base")
        write_checkpoint(transformer, point_encoder, temp / CHECKPOINT.name)
        (temp / "load.py").write_text(LOAD_SNIPPET)

    replace_folder(folder, build)


LOAD_SNIPPET = '''"""The miniature DICEPTION in this folder, through the pack's loader (run from the repository root)."""
import sys, torch
from pathlib import Path
HERE = Path(__file__).resolve().parent


def load(cache=None):
    from models.diception import load_pipeline
    return load_pipeline(HERE / "base", HERE / "diception_miniature.safetensors", torch.float32, cache or HERE / ".prompt_cache")
'''


def save_untrained(transformer, base: Path) -> None:
    """The transformer at its initialisation into ``base/transformer`` (fp16): the untrained baseline, and what a
    loader of the base folder finds there."""
    replace_folder(base / "transformer", copy.deepcopy(transformer).to(torch.float16).save_pretrained)


def write_log(log_file: Path, **entries) -> None:
    """Merge ``entries`` into the JSON training log, written crash-safe."""
    current = json.loads(log_file.read_text()) if log_file.is_file() else {}
    current.update(entries)
    replace_file(log_file, lambda f: f.write((json.dumps(current, indent=1) + "\n").encode()))
