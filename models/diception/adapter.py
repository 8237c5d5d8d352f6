"""Task adapters: low-rank (LoRA) adapters that teach DICEPTION's transformer a new task, through PEFT.

An adapter lives on a *shared-weights copy* of the transformer (new module objects around the very same
parameters), so the loaded model stays as it was: its modules, its answers. Several adapters can sit on one
copy; ``activate`` switches to one of them, or turns all off (built-in tasks, bitwise equal to the base model).

Weights are kept in diffusers' SD3 LoRA key format (``transformer.transformer_blocks.N.attn.to_q.lora_A.weight``),
the format ``StableDiffusion3Pipeline.lora_state_dict`` and ComfyUI's ``comfy/lora.py`` read.
"""

import copy
import hashlib
import json
from dataclasses import dataclass, field

import torch

# PEFT is imported where it is used: it pulls in transformers, and most runs of the pack never train.

# The 8 attention projections of a joint block, as diffusers' SD3 LoRA training targets them
# (the last SD3 block is context_pre_only: it has no to_add_out, so it holds 7).
ATTENTION_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
# The adaLN modulation of a joint block (image and text stream): where the pooled prompt, i.e. the task, steers each
# block's shift, scale and gate
ADALN_TARGETS = ("norm1.linear", "norm1_context.linear")
# The feed-forward layers of a joint block (image stream ff, text stream ff_context; the last block has no ff_context)
MLP_TARGETS = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2")
TARGET_PRESETS = {
    "attention + MLP + adaLN": ATTENTION_TARGETS + MLP_TARGETS + ADALN_TARGETS,
    "attention + MLP": ATTENTION_TARGETS + MLP_TARGETS,
    "attention": ATTENTION_TARGETS,
    "attention + adaLN": ATTENTION_TARGETS + ADALN_TARGETS,
}
DEFAULT_PRESET = "attention + MLP + adaLN"  # what the few-shot measurements favour (docs/adapters.md)
DEFAULT_TARGETS = TARGET_PRESETS[DEFAULT_PRESET]
# Share of SD3-medium's transformer (2.028 B parameters) a rank-8 adapter (DEFAULT_RANK) of each preset trains
PRESET_SHARE_SD3_MEDIUM = {"attention + MLP + adaLN": "0.72 %", "attention + MLP": "0.52 %", "attention": "0.23 %", "attention + adaLN": "0.43 %"}
DEFAULT_RANK = 8
MAX_RANK = 256
MAX_STEPS = 100_000  # training steps one run may ask for
KEY_PREFIX = "transformer."


@dataclass
class TaskAdapter:
    """A trained adapter: the task it answers, its prompt, its LoRA weights (diffusers keys) and where it came from."""

    task: str
    prompt: str
    rank: int
    alpha: float
    targets: tuple
    weights: dict  # {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": fp32 tensor, ...}
    checkpoint: str = ""  # checkpoint_identity() of the DICEPTION transformer it was trained on
    settings: dict = field(default_factory=dict)
    strength: float = 1.0

    def with_strength(self, strength: float) -> "TaskAdapter":
        return TaskAdapter(**{**self.__dict__, "strength": float(strength)})


def check_rank(rank) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_RANK:
        raise ValueError(f"rank: expected a whole number from 1 to {MAX_RANK} (8 on the default target is 0.72 % of SD3-medium), got {rank!r}")
    return rank


def lora_config(rank: int, targets=DEFAULT_TARGETS):
    """alpha = rank (scale 1), Gaussian A and zero B: the adapter starts as the identity, as diffusers' SD3 script."""
    from peft import LoraConfig

    return LoraConfig(r=check_rank(rank), lora_alpha=rank, target_modules=list(targets), init_lora_weights="gaussian")


def shared_copy(transformer: torch.nn.Module) -> torch.nn.Module:
    """New module objects around the same parameters and buffers: adapters injected here leave ``transformer`` as is.

    Parameters are shared as objects, so moving either model between devices moves both."""
    memo = {id(t): t for t in list(transformer.parameters()) + list(transformer.buffers())}
    return copy.deepcopy(transformer, memo)


def slot_name(index: int) -> str:
    """PEFT's name for the adapter in slot ``index`` (task names are free text; PEFT names must be identifiers)."""
    return f"task{index}"


def attach(transformer: torch.nn.Module, name: str, rank: int, targets=DEFAULT_TARGETS, weights=None, seed: int = 0) -> list:
    """Inject a LoRA adapter called ``name`` into ``transformer`` (in place); its weights in fp32 on the base's device.

    ``weights`` (diffusers keys) are loaded when given; else A is drawn from ``seed`` (B = 0). Returns its parameters."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(lora_config(rank, targets), transformer, adapter_name=name)
    params = lora_parameters(transformer, name)
    for p in params:
        p.data = p.data.float()
    if weights is not None:
        peft_keys = {k[len(KEY_PREFIX):]: v for k, v in weights.items()}
        result = set_peft_model_state_dict(transformer, peft_keys, adapter_name=name)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"adapter: {len(unexpected)} weights match no layer of this transformer, e.g. {unexpected[0]}")
    return params


def lora_parameters(transformer: torch.nn.Module, name: str) -> list:
    """The LoRA parameters (A and B of every adapted layer) of the adapter ``name``."""
    return [p for n, p in transformer.named_parameters() if f".{name}." in n and "lora_" in n]


def adapter_weights(transformer: torch.nn.Module, name: str) -> dict:
    """The adapter ``name`` as fp32 CPU tensors under diffusers' SD3 LoRA keys."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(transformer, adapter_name=name)
    return {KEY_PREFIX + k: v.detach().float().cpu().clone().contiguous() for k, v in state.items()}


def activate(transformer: torch.nn.Module, name=None, strength: float = 1.0) -> None:
    """Run the adapter ``name`` at ``strength``, or no adapter at all (``None``: the base model's exact forward)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in transformer.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        if name is None:
            module.enable_adapters(False)
            continue
        module.enable_adapters(True)
        module.set_adapter(name)
        module.set_scale(name, strength)


def lora_parameter_count(transformer: torch.nn.Module, rank: int = DEFAULT_RANK, targets=DEFAULT_TARGETS) -> int:
    """Parameters a rank-``rank`` adapter adds (works on the meta device: shapes only)."""
    total = 0
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            total += rank * (module.in_features + module.out_features)
    return total


def checkpoint_identity(transformer: torch.nn.Module) -> str:
    """A short fingerprint of the transformer's weights that does not depend on the dtype it was loaded in:
    its config plus the mean absolute value (4 significant digits) of a few tensors."""
    config = {k: v for k, v in dict(transformer.config).items() if not k.startswith("_")}
    state = dict(transformer.named_parameters())
    names = sorted(n for n in state if ".lora_" not in n and ".base_layer." not in n)
    picks = [n for n in names if n.startswith(("pos_embed.proj", "context_embedder", "proj_out"))] + [
        n for n in names if n.startswith("transformer_blocks.0.attn.to_q")
    ]
    stats = {n: f"{state[n].detach().float().abs().mean().item():.4g}" for n in picks}
    digest = hashlib.sha256(json.dumps([config, stats], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
