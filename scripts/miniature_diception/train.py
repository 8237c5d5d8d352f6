"""Train the miniature DICEPTION on the synthetic world (``world.scene``), deterministically, in two stages.

    python -m scripts.miniature_diception.train vae          # the tiny VAE (≈ 6.5 min on two threads)
    python -m scripts.miniature_diception.train transformer --steps N   # the transformer (≈ 0.3 s a step)
    (``--threads``: 2 by default, as the committed weights were trained; both stages together take under 30 minutes
    on 2 cores)

1. **VAE**: diffusers' ``AutoencoderKL`` with SD3's 16 latent channels and an 8× downsampling (``VAE_CONFIG``),
   trained as an autoencoder (L1 + MSE, a small KL) on 64² crops of world images and of the answers it must also
   carry (depth, normal, entity and mask images: ``targets.py``). SD3's ``scaling_factor``/``shift_factor`` are then
   set from the latents' statistics, so that the transformer sees unit-variance latents as SD3-medium does. The base
   folder gets the fixture's scheduler and T5 made to answer zeros (``silent_t5``), and the miniature's own CLIP
   tokenizers and encoders (``clip_text_encoders``: one pooled embedding per prompt).
2. **Transformer**: diffusers' ``SD3Transformer2DModel`` (SD3's architecture, ``TRANSFORMER_CONFIG``) with
   DICEPTION's point encoder, trained from diffusers' random initialisation plus ``positional_routing`` with the
   pack's own engine: every parameter trains (full fine-tune), the latents come from ``finetune.example_latents``
   (the pipeline's own VAE encoding), σ from ``finetune.sample_sigmas`` (SD3's shifted logit-normal, ``ONE_STEP`` of
   the examples at σ = 1: one-step answers), the loss is ``finetune.flow_loss`` (σ²-weighted velocity error) of
   ``transformer.diception_forward``; the prompts are DICEPTION's (``tasks.TASK_PROMPTS``; semantic segmentation
   names the class's COCO category; point and semantic segmentation are drawn 1.5× and 2× as often as each other
   task: ``TASK_WEIGHTS``); point segmentation gets one point in the object, as ``pipeline.point_slots`` stores it;
   the silent T5's 256 equal tokens are computed as one (``repeated_tokens``: the same function, 2.7× faster a
   step); 10 % of the examples are trained as the unconditioned branch (empty prompt, zero point tokens), and
   ``RECONSTRUCTION`` of them (later ``RECONSTRUCTION_LATER``) are a training-only auxiliary task
   ``[[image2image]]`` whose answer is the image itself (it rewards carrying the condition image to the output).
   The learning rate does not depend on the run's length (``learning_rate``), so ``--steps N`` gives the weights
   of step N of any longer run. Every ``CHECK_EVERY`` steps the log gets a held-out check (``held_out_check``).

Every step's draws come from a generator seeded by the step, and the training scenes are fixed (``SCENES`` seeds), so
a run resumed from its state file (every ``STATE_EVERY`` steps) gives the same weights as an uncut one. Output, in
the official formats (every loader path of the pack reads it): ``weights/base`` (an SD3 diffusers folder: the trained
VAE, the text encoders, SD3's scheduler, and the transformer at its random initialisation = the untrained baseline)
and ``weights/diception_miniature.safetensors`` (the DICEPTION checkpoint's parts, flattened as the pack's converter
writes them; fp16), plus ``weights/train.log.json``. ``--snapshot DIR``: every 5 minutes the current miniature is
also written there (for work that builds on it while it trains).
"""

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.diception import finetune  # noqa: E402
from models.diception.pipeline import point_slots  # noqa: E402
from models.diception.transformer import diception_forward  # noqa: E402
from models.publish import replace_file, replace_folder  # noqa: E402
from scripts.miniature_diception import targets  # noqa: E402
from scripts.miniature_diception.examples import SIZE, Encoded, HeldOutCheck, held_out_check  # noqa: E402
from scripts.miniature_diception.files import (  # noqa: E402
    BASE, CHECKPOINT, LOG, WEIGHTS, build_base, save_untrained, snapshot, write_checkpoint, write_log,
)
from scripts.miniature_diception.initialisation import positional_routing  # noqa: E402
from scripts.miniature_diception.repeated_tokens import collapse_t5, use_repeated_t5  # noqa: E402
from scripts.miniature_diception.vae import VAE_BATCH, VAE_CONFIG, VAE_CROP, VAE_STEPS, build_vae, full_images, vae_optimiser, vae_step  # noqa: E402
from scripts.miniature_diception.world import CLASSES  # noqa: E402

TRANSFORMER_CONFIG = dict(  # sample_size 128 as SD3-medium's: positions 2 apart in its sin-cos table (positional_routing)
    sample_size=128, patch_size=2, in_channels=16, num_layers=4, attention_head_dim=32, num_attention_heads=4,
    joint_attention_dim=64, caption_projection_dim=128, pooled_projection_dim=40, out_channels=16, pos_embed_max_size=32,
)
SCENES = range(0, 800)  # the transformer's training scenes (world.TRAIN_SEEDS)
STEPS, BATCH, LR, WARMUP, HOLD, COOLDOWN = 4000, 16, 1e-3, 100, 2000, 1500
TASK_WEIGHTS = torch.tensor([1, 1, 1.5, 1, 2.0])  # how often each of targets.TASKS is drawn: point and semantic more
ONE_STEP, DROPOUT = 0.6, 0.1
ROUTING_HEADS, ROUTING_GAIN = 2, 3.0  # positional_routing: heads per block that start attending by position, and how sharply
RECONSTRUCTION = 0.3  # share of examples of the auxiliary task "[[image2image]]" (answer = the image itself) ...
RECONSTRUCTION_LATER, RECONSTRUCTION_UNTIL = 0.1, 1000  # ... and after step 1000 (the image is carried by then)
STATE_EVERY = 50
CHECK_EVERY = 250  # a held-out check in the log (held_out_check)
OUT = WEIGHTS  # where the transformer stage writes its checkpoint and log
SNAPSHOT_SECONDS = 300


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# --- the VAE (scripts/miniature_diception/vae.py) -------------------------------------------------------------

def train_vae(args):
    vae = build_vae()
    optimiser = vae_optimiser(vae)
    state_file = WEIGHTS / "vae.state.pt"
    start, history = 0, []
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        vae.load_state_dict(state["model"]), optimiser.load_state_dict(state["optimiser"])
        start, history = state["step"], state["history"]
    steps = args.steps or VAE_STEPS
    t0 = time.time()
    for step in range(start, steps):
        history.append(vae_step(step, vae, optimiser))
        if (step + 1) % 50 == 0 or step + 1 == steps:
            log(f"vae step {step + 1}/{steps} rec {np.mean(history[-50:]):.4f} ({time.time() - t0:.0f} s)")
            WEIGHTS.mkdir(exist_ok=True)
            state = {"model": vae.state_dict(), "optimiser": optimiser.state_dict(), "step": step + 1, "history": history}
            replace_file(state_file, lambda f: torch.save(state, f))  # a kill mid-write keeps the last state
    vae.eval()
    with torch.no_grad():  # SD3's latent normalisation, from the training images' latents
        z = torch.cat([vae.encode(full_images(range(9_000_000, 9_000_064), k)).latent_dist.mode() for k in range(6)])
    shift, scale = float(z.mean()), float(1 / z.std())
    vae.register_to_config(shift_factor=round(shift, 4), scaling_factor=round(scale, 4))
    return vae, history, time.time() - t0


# --- the architecture (the base folder and checkpoint: files.py) -------------------------------------------

def build_transformer():
    """SD3's transformer at the miniature's initialisation: diffusers' own (seed 0), then ``positional_routing``."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(**TRANSFORMER_CONFIG)
    positional_routing(transformer, ROUTING_HEADS, ROUTING_GAIN)
    return transformer


def build_point_encoder(dim: int):
    from models.diception.point_encoder import PointEncoder

    torch.manual_seed(1)
    return PointEncoder(dim)


# --- the transformer ----------------------------------------------------------------------------------------

def pipeline_for(base: Path, transformer, point_encoder, vae, cache: Path):
    from models.diception.loading import load_scheduler_config
    from models.diception.pipeline import DicePipeline
    from models.diception.text_encoder_files import TextEncoderFiles, choose_weights, tokenizer_folders

    text = TextEncoderFiles(choose_weights(base, {}, [], base), torch.float32, tokenizer_folders(base, {}), base)
    return DicePipeline(transformer, point_encoder, vae, load_scheduler_config(base), text, cache)


def make_batch(step, data):
    """The examples of ``step``: scene, target latent, prompt and point of each, from the step's own generator."""
    g = torch.Generator().manual_seed(10_007 * (step + 1))
    rows = []
    for _ in range(BATCH):
        i = int(torch.randint(len(data), (1,), generator=g))
        cond, answers, points = data[i]
        task = targets.TASKS[int(torch.multinomial(TASK_WEIGHTS, 1, generator=g))]
        if float(torch.rand(1, generator=g)) < (RECONSTRUCTION if step < RECONSTRUCTION_UNTIL else RECONSTRUCTION_LATER):
            task = "image"
        pts = []
        if task == "point segmentation":
            if not points:
                task = "depth"
            else:
                oid, candidates = points[int(torch.randint(len(points), (1,), generator=g))]
                pts = [candidates[int(torch.randint(len(candidates), (1,), generator=g))]]
                key, prompt = f"point:{oid}", "point segmentation"
        if task == "semantic segmentation":
            cls = list(CLASSES)[int(torch.randint(len(CLASSES), (1,), generator=g))]
            key = prompt = f"semantic:{cls}"
        elif task != "point segmentation":
            key = prompt = task
        rows.append((cond, answers[key], prompt, pts))
    return rows, g


def train_step(step, transformer, point_encoder, data, embeds, shift, settings):
    """The loss of ``step`` (its examples, noise, σ and prompt dropout all drawn from the step's generator)."""
    rows, g = make_batch(step, data)
    z = torch.stack([r[1] for r in rows])
    cond = torch.stack([r[0] for r in rows])
    noise = torch.randn(z.shape, generator=g)
    sigmas = finetune.sample_sigmas(len(rows), settings, shift, g)
    dropped = (torch.rand(len(rows), generator=g) < DROPOUT).view(-1, 1, 1)
    s = sigmas.view(-1, 1, 1, 1)
    noisy = (1 - s) * z + s * noise
    text = torch.cat([embeds[r[2]][0] for r in rows])
    pooled = torch.cat([embeds[r[2]][1] for r in rows])
    text = torch.where(dropped, embeds[""][0].expand_as(text), text)
    pooled = torch.where(dropped[:, 0], embeds[""][1].expand_as(pooled), pooled)
    slots = [point_slots(r[3], SIZE, SIZE) for r in rows]
    tokens = point_encoder(torch.cat([c for c, _ in slots]), torch.cat([l for _, l in slots]))
    tokens = torch.where(dropped, torch.zeros_like(tokens), tokens)
    prediction = diception_forward(transformer, noisy, cond, text, pooled, tokens, sigmas * 1000)
    return finetune.flow_loss(prediction, noise - z, sigmas, settings.precondition)


def make_optimiser(transformer, point_encoder):
    """Full fine-tune: every parameter of the transformer and the point encoder trains."""
    params = list(transformer.parameters()) + [p for n, p in point_encoder.named_parameters()]
    for p in params:
        p.requires_grad_(True)
    return params, torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.99), weight_decay=0.01)


def optimise(step, transformer, point_encoder, params, optimiser, data, embeds, shift, settings) -> float:
    """One training step → its loss (before the update), rounded as the log keeps it."""
    for group in optimiser.param_groups:
        group["lr"] = learning_rate(step)
    loss = train_step(step, transformer, point_encoder, data, embeds, shift, settings)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimiser.step()
    return round(loss.item(), 6)


def learning_rate(step: int) -> float:
    """Warm-up, ``LR`` held until ``HOLD``, inverse-square-root decay, and over the last ``COOLDOWN`` steps of the
    ``STEPS`` run a linear cool-down to 0 (warmup-stable-decay: the cool-down is where such a run gains most). It
    depends on no ``--steps``: the weights after N steps are the same whatever ``--steps`` a run was given."""
    warm = min(1.0, (step + 1) / WARMUP)
    rate = LR * warm * min(1.0, math.sqrt(HOLD / (step + 1)))
    cool_from = STEPS - COOLDOWN
    if step >= cool_from:
        rate = LR * math.sqrt(HOLD / cool_from) * (STEPS - step) / COOLDOWN
    return rate


def prepare_transformer_training(cache: Path):
    """The pipeline around the trained VAE, the fresh transformer and point encoder, the encoded prompts."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(BASE, subfolder="vae", torch_dtype=torch.float32).eval().requires_grad_(False)
    transformer = build_transformer()
    point_encoder = build_point_encoder(TRANSFORMER_CONFIG["caption_projection_dim"])
    pipeline = pipeline_for(BASE, transformer, point_encoder, vae, cache)
    prompts = targets.prompts()
    encoded = pipeline.encode_prompts(list(prompts.values()) + [""])
    embeds = {key: encoded[p] for key, p in prompts.items()}
    embeds[""] = encoded[""]
    use_repeated_t5(transformer)  # the silent T5's 256 equal tokens trained as one (exact; repeated_tokens.py)
    embeds = {key: (collapse_t5(text), pooled) for key, (text, pooled) in embeds.items()}
    return pipeline, transformer, point_encoder, embeds


def settings_for_sigmas():
    return replace(finetune.TrainingSettings(), one_step_fraction=ONE_STEP, precondition=True)


def train_transformer(args):
    torch.manual_seed(0)
    cache = Path(tempfile.mkdtemp(prefix="mini24-prompts."))
    pipeline, transformer, point_encoder, embeds = prepare_transformer_training(cache)
    save_untrained(transformer, BASE)
    shift = float(pipeline.scheduler_config.get("shift", 1.0))
    settings = settings_for_sigmas()
    t0 = time.time()
    params, optimiser = make_optimiser(transformer, point_encoder)
    state_file = WEIGHTS / "transformer.state.pt"
    start, history, checks = 0, [], {}
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        transformer.load_state_dict(state["transformer"]), point_encoder.load_state_dict(state["points"])
        optimiser.load_state_dict(state["optimiser"])
        start, history, checks = state["step"], state["history"], state.get("checks", {})
        log(f"resumed at step {start}")
    steps = args.steps or STEPS
    if steps > STEPS:
        raise SystemExit(f"--steps {steps}: the schedule cools down to 0 at step {STEPS}; change STEPS for a longer run")
    if start > steps:
        raise SystemExit(f"--steps {steps}: the state file {state_file} is at step {start} already")
    if start < steps:  # the training scenes' latents, encoded only when there is training left to do
        data = Encoded(pipeline, SCENES).encode_all(log)
        log(f"dataset: {len(SCENES)} scenes encoded in {time.time() - t0:.0f} s")
        check = HeldOutCheck(pipeline, data)
    transformer.train(), point_encoder.train()
    t1, last_snapshot = time.time(), time.time()
    for step in range(start, steps):
        history.append(optimise(step, transformer, point_encoder, params, optimiser, data, embeds, shift, settings))
        if (step + 1) % 10 == 0:
            log(f"step {step + 1}/{steps} loss {np.mean(history[-10:]):.4f} ({(time.time() - t1) / (step + 1 - start):.2f} s/step)")
        if (step + 1) % CHECK_EVERY == 0:
            checks[str(step + 1)] = held_out_check(transformer, point_encoder, check, embeds)
            log(f"held-out one-step latent error / mean answer's at step {step + 1}: {checks[str(step + 1)]}")
        if (step + 1) % STATE_EVERY == 0 or step + 1 == steps:
            state = {"transformer": transformer.state_dict(), "points": point_encoder.state_dict(),
                     "optimiser": optimiser.state_dict(), "step": step + 1, "history": history, "checks": checks}
            replace_file(state_file, lambda f: torch.save(state, f))  # a kill mid-write keeps the last state
        if args.snapshot and time.time() - last_snapshot > SNAPSHOT_SECONDS:
            snapshot(transformer.eval(), point_encoder.eval(), args.snapshot)
            transformer.train(), point_encoder.train()
            last_snapshot = time.time()
            log(f"snapshot at step {step + 1} → {args.snapshot}")
    transformer.eval(), point_encoder.eval()
    write_checkpoint(transformer, point_encoder, OUT / CHECKPOINT.name)
    if args.snapshot:
        snapshot(transformer, point_encoder, args.snapshot)
    return history, checks, time.time() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=["vae", "transformer"])
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (default: the full run)")
    parser.add_argument("--snapshot", type=Path, default=None, help="write the current miniature here every 5 minutes")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the committed weights: 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    WEIGHTS.mkdir(exist_ok=True)
    if args.stage == "vae":
        vae, history, seconds = train_vae(args)
        replace_folder(BASE, lambda folder: build_base(vae, build_transformer(), folder))  # a kill mid-build keeps the earlier base
        write_log(OUT / LOG.name, vae={"config": VAE_CONFIG, "steps": len(history), "batch": VAE_BATCH, "crop": VAE_CROP,
                       "first_losses": history[:2], "seconds": round(seconds), "loss_every_50": history[49::50],
                       "scaling_factor": vae.config.scaling_factor, "shift_factor": vae.config.shift_factor})
        log("VAE written to", BASE / "vae")
    else:
        history, checks, seconds = train_transformer(args)
        write_log(OUT / LOG.name, transformer={"config": TRANSFORMER_CONFIG, "steps": len(history), "batch": BATCH, "lr": LR,
                               "one_step_fraction": ONE_STEP, "prompt_dropout": DROPOUT, "scenes": len(SCENES),
                               "first_losses": history[:2], "seconds": round(seconds), "loss_every_10": history[9::10],
                               "held_out_check": checks})
        log("checkpoint written to", CHECKPOINT)


if __name__ == "__main__":
    main()
