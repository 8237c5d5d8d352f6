"""SD3's three text encoders as ComfyUI users keep them: one file each (``models/text_encoders``, older
installs ``models/clip``: ``clip_l``, ``clip_g``, ``t5xxl_fp16`` / ``t5xxl_fp8_e4m3fn`` / ``t5xxl_fp8_e4m3fn_scaled``),
or inside an SD3 single file (``text_encoders.clip_l.transformer.*`` …).

Layouts, as ComfyUI v0.8.0 reads them (``comfy/sd.py`` ``load_clip`` / ``load_text_encoder_state_dicts`` /
``detect_te_model``, ``comfy/utils.py`` ``convert_old_quants``, ``comfy/ops.py`` ``mixed_precision_ops``,
``comfy/quant_ops.py`` ``QUANT_ALGOS``):

- CLIP-L / CLIP-G: transformers ``CLIPTextModel`` keys ``text_model.*``; optionally ``text_projection.weight``
  (or ``text_projection``, transposed, as ComfyUI's CLIPSave wrote it) and ``logit_scale`` (unused).
- T5-XXL: transformers T5 encoder keys ``shared.weight`` and ``encoder.*`` (no ``encoder.embed_tokens``).
- Tensors in fp32 / fp16 / bf16, or fp8 (``float8_e4m3fn`` / ``float8_e5m2``) cast up as they are.
- Scaled fp8, older marker: a ``scaled_fp8`` tensor, per layer ``<layer>.scale_weight`` (the weight is
  fp8 · scale_weight) and optionally ``<layer>.scale_input`` (activation scale of fp8 matmuls).
- Scaled fp8, current: per layer ``<layer>.comfy_quant`` (JSON bytes ``{"format": "float8_e4m3fn", …}``) or
  the file's metadata ``_quantization_metadata`` (``{"layers": {layer: {"format": …}}}``), with
  ``<layer>.weight_scale`` and optionally ``<layer>.input_scale``.

Quantised weights are dequantised once at load into the compute dtype (ComfyUI's full-precision matmul
path); activation scales are not needed then. Which file is which encoder is read off the weights (keys and
shapes against the configs), not the file name.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

from ..weights import WeightsError, load_weights
from .prompts import TextEncoders, encoder_identity

# encoder kind → its part name in a diffusers folder / the shipped configs
PARTS = {"clip_l": "text_encoder", "clip_g": "text_encoder_2", "t5xxl": "text_encoder_3"}
SINGLE_FILE_PREFIXES = {kind: f"text_encoders.{kind}.transformer." for kind in PARTS}
FP8_FORMATS = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
CLIP_PROBE, T5_PROBE = "text_model.encoder.layers.0.mlp.fc1.weight", "encoder.final_layer_norm.weight"


@dataclass(frozen=True)
class EncoderWeights:
    """Where one encoder's weights are: a file (its keys under ``prefix``), or a diffusers sub-folder."""

    path: Path
    prefix: str = ""

    @property
    def is_folder(self) -> bool:
        return Path(self.path).is_dir()


# --- reading and dequantising ----------------------------------------------------------------------

def read_state(weights: EncoderWeights):
    """→ (tensors with the prefix removed, safetensors metadata)."""
    path, prefix = Path(weights.path), weights.prefix
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                state = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
        except Exception as e:
            raise WeightsError(f"could not read {path}: the file is corrupt or truncated ({e})") from None
    else:
        state = {k[len(prefix):]: v for k, v in load_weights(path).items() if k.startswith(prefix)}
        metadata = {}
    return state, metadata


def quantised_layers(state: dict, metadata: dict, prefix: str = "") -> dict:
    """{layer: {"format": …}} of the scaled-fp8 layers, from whichever of ComfyUI's three markings the file uses."""
    if "_quantization_metadata" in metadata:
        layers = json.loads(metadata["_quantization_metadata"]).get("layers", {})
        return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in layers.items()}
    layers = {}
    for key in state:
        if key.endswith(".comfy_quant"):
            layers[key[: -len(".comfy_quant")]] = json.loads(state[key].numpy().tobytes())
        elif "scaled_fp8" in state and key.endswith(".scale_weight"):
            layers[key[: -len(".scale_weight")]] = {"format": "float8_e4m3fn"}
    return layers


def dequantise(state: dict, metadata: dict, dtype: torch.dtype, source: str, prefix: str = "") -> dict:
    """Plain tensors for a transformers model: scaled fp8 weights × their scale, other fp8 tensors cast up,
    scale/marker tensors dropped. Each weight is computed in fp32 and stored in ``dtype``."""
    layers = quantised_layers(state, metadata, prefix)
    out = {}
    for layer, conf in layers.items():
        fmt = conf.get("format")
        if fmt not in FP8_FORMATS:
            raise WeightsError(f"{source}: layer {layer} is quantised as {fmt!r}; supported: {sorted(FP8_FORMATS)} (use the fp16 or fp8 file)")
        scale = state.get(f"{layer}.weight_scale", state.get(f"{layer}.scale_weight"))
        weight = state.get(f"{layer}.weight")
        if weight is None or scale is None:
            raise WeightsError(f"{source}: quantised layer {layer} lacks its weight or weight scale")
        out[f"{layer}.weight"] = (weight.float() * scale.float()).to(dtype)
    dropped = (".comfy_quant", ".weight_scale", ".scale_weight", ".scale_input", ".input_scale")
    for key, value in state.items():
        if key in out or key == "scaled_fp8" or key.endswith(dropped):
            continue
        out[key] = value.to(dtype) if value.dtype in FP8_FORMATS.values() else value
    return out


# --- which encoder a file holds ------------------------------------------------------------------

def _config(configs: Path, kind: str):
    cls = T5Config if kind == "t5xxl" else CLIPTextConfig
    return cls.from_json_file(str(Path(configs) / PARTS[kind] / "config.json"))


def header_shapes(path: Path, prefix: str = "") -> dict:
    """{key: shape} of a safetensors file without reading its tensors; {} for other formats."""
    if Path(path).suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k[len(prefix):]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix)}
    except Exception:
        return {}


def classify(shapes: dict, configs: Path):
    """"clip_l", "clip_g", "t5xxl" or None: which SD3 text encoder these weights are (keys and sizes vs the configs)."""
    if T5_PROBE in shapes:
        return "t5xxl" if shapes[T5_PROBE][0] == _config(configs, "t5xxl").d_model else None
    if CLIP_PROBE in shapes:
        hidden = shapes["text_model.embeddings.token_embedding.weight"][1]
        layers = len({k.split(".")[3] for k in shapes if k.startswith("text_model.encoder.layers.")})
        for kind in ("clip_l", "clip_g"):
            config = _config(configs, kind)
            if (config.hidden_size, config.num_hidden_layers) == (hidden, layers):
                return kind
    return None


def classify_files(paths, configs: Path) -> dict:
    """{kind: [paths]} of the SD3 text encoders among ``paths`` (safetensors headers only)."""
    found = {kind: [] for kind in PARTS}
    for path in paths:
        kind = classify(header_shapes(path), configs)
        if kind:
            found[kind].append(Path(path))
    return found


# --- building the encoders ------------------------------------------------------------------------

def build_encoder(kind: str, weights: EncoderWeights, configs: Path, dtype: torch.dtype):
    """One transformers encoder (eval, no gradients) from a ComfyUI-layout file, or a diffusers sub-folder."""
    model_cls = T5EncoderModel if kind == "t5xxl" else CLIPTextModelWithProjection
    if weights.is_folder:
        return model_cls.from_pretrained(str(weights.path), torch_dtype=dtype).eval().requires_grad_(False)
    source = f"{Path(weights.path).name} ({kind})"
    raw, metadata = read_state(weights)
    if not raw:
        raise WeightsError(f"{Path(weights.path).name} has no {kind} weights ({weights.prefix}*)")
    state = dequantise(raw, metadata, dtype, source, weights.prefix)
    del raw
    config = _config(configs, kind)
    if kind == "t5xxl":
        state.setdefault("encoder.embed_tokens.weight", state.get("shared.weight"))
    else:
        state.pop("logit_scale", None)
        if "text_projection" in state:  # saved by ComfyUI's CLIPSave: transposed, without ".weight"
            state["text_projection.weight"] = state.pop("text_projection").t().contiguous()
        if "text_projection.weight" not in state:  # as SD3's clip_l ships: the pooled output stays unprojected
            state["text_projection.weight"] = torch.eye(config.projection_dim, config.hidden_size)
    model, info = model_cls.from_pretrained(None, config=config, state_dict=state, torch_dtype=dtype, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
    if missing or info.get("mismatched_keys"):
        raise WeightsError(f"{source}: not the SD3 {kind} encoder; missing {missing[:5]}, mismatched {info.get('mismatched_keys', [])[:3]}")
    return model.eval().requires_grad_(False)


class TextEncoderFiles:
    """SD3's text encoders from files or a diffusers folder's sub-folders, one source per encoder, built only when
    a prompt is not in the prompt cache. ``tokenizers``: {"clip_l", "clip_g", "t5xxl": folder}.

    ``identity`` (the prompt cache's key) covers the weight files (or, with none, ``identity_files``) and the
    tokenizer files: a changed tokenizer changes the embeddings, so it must not get an old answer."""

    def __init__(self, weights: dict, dtype: torch.dtype, tokenizers: dict, configs, identity_files=()):
        self.weights, self.dtype, self.tokenizers, self.configs = weights, dtype, tokenizers, Path(configs)
        self.identity_files = identity_files

    @property
    def identity(self) -> str:
        weights = [f for w in self.weights.values() if w is not None for f in _files(Path(w.path))]
        tokenizers = [f for d in self.tokenizers.values() if d and Path(d).is_dir() for f in _files(Path(d))]
        return encoder_identity(sorted(set(weights or self.identity_files)) + sorted(set(tokenizers)), self.dtype)

    def load(self) -> TextEncoders:
        missing = [kind for kind in PARTS if self.weights.get(kind) is None]
        if missing:
            raise WeightsError(
                f"no weights for the text encoder(s) {missing}: a prompt is not in the prompt cache, so the text "
                "encoders are needed. Put clip_l / clip_g / t5xxl files into ComfyUI's models/text_encoders (or "
                "models/clip) and pick them on Load DICEPTION, or use an sd3_medium_incl_clips_t5xxl* file or the diffusers folder"
            )
        dirs = self.tokenizers
        absent = [k for k in PARTS if not dirs.get(k) or not Path(dirs[k]).is_dir()]
        if absent:
            raise WeightsError(f"tokenizer folders not found for {absent} (searched: {dirs}); they are needed on a prompt-cache miss")
        encoders = {kind: build_encoder(kind, self.weights[kind], self.configs, self.dtype) for kind in PARTS}
        return TextEncoders(
            tokenizer=CLIPTokenizer.from_pretrained(str(dirs["clip_l"]), model_max_length=77),
            tokenizer_2=CLIPTokenizer.from_pretrained(str(dirs["clip_g"]), model_max_length=77, pad_token="!"),
            tokenizer_3=T5TokenizerFast.from_pretrained(str(dirs["t5xxl"])),
            text_encoder=encoders["clip_l"],
            text_encoder_2=encoders["clip_g"],
            text_encoder_3=encoders["t5xxl"],
        )


def _files(path: Path) -> list:
    return sorted(x for x in path.iterdir() if x.is_file()) if path.is_dir() else [path]


# --- which files to use ----------------------------------------------------------------------------

def own_encoders(base: Path) -> dict:
    """The encoders a base model brings: a diffusers folder's sub-folders, or those inside a single file."""
    base = Path(base)
    if base.is_dir():
        return {kind: EncoderWeights(base / part) for kind, part in PARTS.items() if (base / part).is_dir()}
    with safe_open(str(base), framework="pt") as f:
        keys = list(f.keys())
    return {kind: EncoderWeights(base, p) for kind, p in SINGLE_FILE_PREFIXES.items() if any(k.startswith(p) for k in keys)}


def choose_weights(base, chosen: dict, candidates, configs) -> dict:
    """kind → EncoderWeights (or None: not found, needed only on a prompt-cache miss).

    A file chosen for a kind wins; else the base model's own encoder; else the only file of that kind among
    ``candidates`` (found by its weights). Several candidates of one kind is an error naming the choice to make.
    """
    weights, own, found = {}, own_encoders(base), None
    for kind in PARTS:
        path = chosen.get(kind)
        if path:
            actual = classify(header_shapes(path), configs)
            if Path(path).suffix.lower() in SAFETENSORS_SUFFIXES and actual != kind:
                holds = f"holds {actual} weights" if actual else "is not one of SD3's text encoders (clip_l, clip_g, t5xxl)"
                raise WeightsError(f"{kind}: {Path(path).name} {holds}; choose a {kind} file")
            weights[kind] = EncoderWeights(Path(path))
        elif kind in own:
            weights[kind] = own[kind]
        else:
            found = found or classify_files(candidates, configs)
            if len(found[kind]) > 1:
                names = sorted(p.name for p in found[kind])
                raise WeightsError(f"{kind}: several {kind} text encoders found {names}; choose one in Load DICEPTION's {kind!r} input")
            weights[kind] = EncoderWeights(found[kind][0]) if found[kind] else None
    return weights


def tokenizer_folders(base, tokenizer_dirs: dict) -> dict:
    """Tokenizer folders per encoder: a diffusers folder's own, else ``tokenizer_dirs`` {"clip", "t5"}."""
    base = Path(base)
    if base.is_dir():
        return {"clip_l": base / "tokenizer", "clip_g": base / "tokenizer_2", "t5xxl": base / "tokenizer_3"}
    return {"clip_l": tokenizer_dirs.get("clip"), "clip_g": tokenizer_dirs.get("clip"), "t5xxl": tokenizer_dirs.get("t5")}
