"""Train the miniature Segment Anything on the synthetic world (``world.training_scene``), deterministically.

    nice -n 5 python -m scripts.miniature_sam.train [--steps N] [--out scripts/miniature_sam/sam_miniature.safetensors]

Meta's ``segment_anything`` architecture (``Sam`` = ``ImageEncoderViT`` + ``PromptEncoder`` + ``MaskDecoder`` with a
``TwoWayTransformer``), small (``CONFIG``), trained with SAM's recipe (Kirillov et al. 2023, §3 and appendix A):
per object a prompt sampled from its ground-truth mask, a point (uniform in the mask: the target is the object or,
on an object with a part, the part or the whole at random, so that the three multimask outputs learn the
ambiguity; loss = the minimum over the outputs) or a box (its bounding box with noise, one output); then
``CORRECTIVE`` corrective clicks, each sampled from the error region of the previous mask (positive where it
missed, negative where it spilled), prompted with the previous low-resolution logits as the mask input, the
points so far, and (half the time) the box. Loss: cross-entropy + dice on the masks (SAM's 20 × focal + dice
learnt nothing in the 200 steps tried here from scratch: point IoU 0.03), plus the mean squared error of the IoU
head against each output's true IoU. AdamW with linear warm-up and an inverse-square-root decay.

Three additions, each for a property of SAM's released model that PerSAM relies on and a small model trained for
masks alone lacks (measured in docs/miniatures.md, "What PerSAM needs from a SAM"):
- ``appearance_loss``: a linear read-out of each patch's pixels and of its neighbourhood (``CONTEXT``) from the
  image embedding (SAM's encoder is MAE-pretrained, its features keep what things and their surroundings look
  like; PerSAM's location prior compares them);
- ``NEGATIVE_POINT``: some point prompts are [a positive point, a negative point on the background] with one
  output (PerSAM's first pass), and ``CORRECTIVE_MULTIMASK``: some corrective rounds answer with the three outputs
  (PerSAM's refinement passes ask for three outputs with a mask input and a box);
- ``GUIDED``: part of those [positive, negative] prompts are decoded with PerSAM's two decoder cues
  (``guidance_cues``: target-guided attention and the target-semantic prompt, from the target's own mask).

Every step's scenes come from ``training_scene(seed)`` with the step's own seeds, so a resumed run sees the same
data. A state file (``<out>.state.pt``) every ``--checkpoint-every`` steps lets a long run stop and resume
(``--resume``); the final weights are written with models/publish.py's crash-safe helper as ``.safetensors`` in
``segment_anything``'s key names (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), which the pack's
``load_sam`` reads (architecture read off the weights), with a ``<name>.log.json`` training log and ``<name>_config.json`` (the decoder heads) (first steps' losses,
which ``tests/test_persam_miniature.py`` re-computes).
"""

import argparse
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer  # noqa: E402

from models.publish import replace_file  # noqa: E402
from scripts.miniature_sam.world import SIZE, training_scene  # noqa: E402

OUT = Path(__file__).resolve().parent / "sam_miniature.safetensors"
CONFIG = {  # the miniature's sizes (the loader reads them back off the weights)
    "img_size": SIZE, "patch_size": 8, "encoder_embed_dim": 64, "encoder_depth": 3, "encoder_num_heads": 4,
    "encoder_global_attn_indexes": [2], "window_size": 8, "prompt_embed_dim": 64, "decoder_depth": 2,
    "decoder_mlp_dim": 256, "decoder_num_heads": 2,
}
STEPS = 4000  # the committed weights (sam_miniature.log.json): about 26 min with one thread while the other core trains too
BATCH = 8  # images per step
PROMPTS = 3  # objects prompted per image
CORRECTIVE = 1  # corrective clicks after the first prompt
NEGATIVE_POINT = 0.5  # share of point-prompted images whose first prompt also has a negative point on the background
CORRECTIVE_MULTIMASK = 0.5  # share of corrective rounds answered with the three outputs (loss: their minimum)
GUIDED = 0.5  # share of those [positive, negative] first prompts decoded with PerSAM's two cues (``guidance_cues``)
LR, WARMUP, HOLD, WEIGHT_DECAY = 1e-3, 30, 400, 0.05  # HOLD: steps at the full rate before the decay
APPEARANCE = 1.0  # weight of the appearance loss (``appearance_loss``) beside the mask losses
CONTEXT = 1  # the appearance read-out also gives the patches around each patch, CONTEXT of them on each side


def build_miniature(seed: int = 0) -> Sam:
    """The miniature, randomly initialised, its decoder able to take PerSAM's cues (``enable_target_guidance``:
    the same modules and weights; without cues it is SAM's decoder)."""
    from models.persam.guided_decoder import enable_target_guidance

    torch.manual_seed(seed)
    c = CONFIG
    grid = c["img_size"] // c["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=c["img_size"], patch_size=c["patch_size"], embed_dim=c["encoder_embed_dim"], depth=c["encoder_depth"],
            num_heads=c["encoder_num_heads"], mlp_ratio=4.0, out_chans=c["prompt_embed_dim"], qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, rel_pos_zero_init=True,
            window_size=c["window_size"], global_attn_indexes=c["encoder_global_attn_indexes"],
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=c["prompt_embed_dim"], image_embedding_size=(grid, grid),
            input_image_size=(c["img_size"], c["img_size"]), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=c["decoder_depth"], embedding_dim=c["prompt_embed_dim"],
                                          mlp_dim=c["decoder_mlp_dim"], num_heads=c["decoder_num_heads"]),
            transformer_dim=c["prompt_embed_dim"], iou_head_depth=3, iou_head_hidden_dim=128,
        ),
    )
    enable_target_guidance(sam)
    return sam


def appearance_head(seed: int = 1) -> torch.nn.Conv2d:
    """A linear read-out of ``appearance_target`` (each patch's pixels and its neighbourhood) from the image
    embedding, trained beside SAM and then discarded (as MAE's decoder is). SAM's image encoder is MAE-pretrained
    (Kirillov et al. 2023, §3), so its features keep what things look like; a miniature trained for masks alone
    learns edges and objectness but not colour, and PerSAM's location prior (a cosine similarity of features) then
    cannot tell a subject from its recoloured look-alike. The neighbourhood: a look-alike that keeps the subject's
    part matches it patch for patch on that part, unless each feature also describes what lies around it."""
    torch.manual_seed(seed)
    c = CONFIG
    window = 2 * (2 * CONTEXT + 1)
    return torch.nn.Conv2d(c["prompt_embed_dim"], 3 * c["patch_size"] ** 2 + 3 * window**2, 1)


def appearance_target(images: torch.Tensor) -> torch.Tensor:
    """Per patch: its normalised pixels, then its neighbourhood of (2·CONTEXT + 1)² patches at a quarter of the
    resolution (each patch as 2 × 2 averages) → (B, 3·p² + 3·(2(2·CONTEXT + 1))², h, w)."""
    p = CONFIG["patch_size"]
    pooled = F.avg_pool2d(images, p // 2)
    window = 2 * (2 * CONTEXT + 1)
    around = F.unfold(pooled, window, padding=2 * CONTEXT, stride=2)
    h, w = images.shape[-2] // p, images.shape[-1] // p
    return torch.cat([F.pixel_unshuffle(images, p), around.reshape(images.shape[0], -1, h, w)], 1)


def appearance_loss(head, embeddings: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``appearance_target`` read out of the embeddings (B, C, h, w)."""
    return F.mse_loss(head(embeddings), appearance_target(images))


# ---- prompts sampled from ground truth ----------------------------------------------------------------------------

def targets_of(scene) -> list:
    """Per object: (whole mask, [masks of its parts]) with enough visible pixels to prompt."""
    found = []
    for painted in scene.objects:
        if painted.whole.sum() < 30:
            continue
        found.append((painted.whole, [p for p in painted.parts if p.sum() >= 30]))
    return found


def sample_point(rng, mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    i = rng.integers(len(xs))
    return float(xs[i]) + 0.5, float(ys[i]) + 0.5


def noisy_box(rng, mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    noise = 0.1 * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    box = np.array([x0, y0, x1, y1], np.float64) + np.clip(rng.normal(0, 1, 4) * noise, -20, 20)
    return np.clip(box, 0, SIZE)


def error_click(rng, predicted: np.ndarray, target: np.ndarray):
    """A corrective click: in the larger error region, a point inside it (positive on a miss, negative on a spill)."""
    missed, spilled = target & ~predicted, predicted & ~target
    if not missed.any() and not spilled.any():
        return sample_point(rng, target), 1
    region, label = (missed, 1) if missed.sum() >= spilled.sum() else (spilled, 0)
    return sample_point(rng, region), label


# ---- losses ---------------------------------------------------------------------------------------------------------

def mask_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(P, M, H, W) logits vs (P, 1, H, W) targets → (P, M) binary cross-entropy + dice. (SAM's 20 × focal + dice
    learnt nothing in 200 steps here, from scratch on 2 CPU cores: mean point IoU 0.03.)"""
    t = target.expand_as(logits)
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    dice = 1 - (2 * (p * t).sum((-1, -2)) + 1) / (p.sum((-1, -2)) + t.sum((-1, -2)) + 1)
    return ce.mean((-1, -2)) + dice


def true_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    predicted = logits.detach() > 0
    t = target.expand_as(predicted) > 0.5
    return (predicted & t).sum((-1, -2)).float() / (predicted | t).sum((-1, -2)).clamp(min=1).float()


def decode(sam, embedding, points, labels, boxes, mask_input, multimask, cues=(None, None)):
    sparse, dense = sam.prompt_encoder(points=(points, labels) if points is not None else None, boxes=boxes, masks=mask_input)
    guidance = {} if cues[0] is None else {"attn_sim": cues[0], "target_embedding": cues[1]}
    low_res, iou = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
                                    **guidance)
    return low_res, iou


def guidance_cues(embedding: torch.Tensor, masks: list):
    """PerSAM's two cues for the decoder, from each target's own ground-truth mask: the attention bias
    (``attention_similarity``'s sigmoid of the standardised cosine similarity to the target's mean feature, here on
    the feature grid) and the target embedding (that mean feature, ``target_semantic_prompt``) → ((P, 1, 1, h·w),
    (P, 1, C)), detached. SAM's released decoder copes with these inputs without having seen them; a miniature
    decoder trained without them is thrown off by them (one-shot PerSAM's first pass then loses a quarter of its
    IoU), so part of the [positive, negative] prompts train with them."""
    features = embedding[0].detach()  # (C, h, w)
    grid = F.adaptive_avg_pool2d(torch.as_tensor(np.stack(masks)[:, None], dtype=torch.float32), features.shape[-2:])[:, 0]
    inside = grid > 0.5
    tiny = ~inside.flatten(1).any(1)
    inside[tiny] = grid[tiny] > 0  # a target under half of every cell: the cells it touches
    flat = F.normalize(features.flatten(1), dim=0)  # (C, h·w)
    targets = torch.stack([features.permute(1, 2, 0)[m].mean(0) for m in inside])  # (P, C)
    similarity = F.normalize(targets, dim=1) @ flat  # (P, h·w)
    similarity = (similarity - similarity.mean(1, keepdim=True)) / similarity.std(1, keepdim=True)
    return similarity.sigmoid()[:, None, None], targets[:, None]


def upscale(low_res: torch.Tensor) -> torch.Tensor:
    """The loss is taken on the decoder's low-resolution logits (4 × the feature grid) against the area-averaged
    ground truth: the same optimum as at full size, at a quarter of the cost."""
    return low_res


def full_size(low_res: torch.Tensor) -> np.ndarray:
    """(P, h, w) low-resolution logits → (P, SIZE, SIZE) bool masks, as SAM's postprocessing makes them."""
    return (F.interpolate(low_res.detach()[:, None], (SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0] > 0).numpy()


def image_loss(sam, embedding, scene, rng):
    """The loss of one image's prompts (a point or a box each, then ``CORRECTIVE`` corrective clicks)."""
    targets = targets_of(scene)
    if not targets:
        return None
    chosen = [targets[i] for i in rng.permutation(len(targets))[:PROMPTS]]
    use_box = rng.uniform() < 0.5
    background = ~np.any([painted.whole for painted in scene.objects], axis=0)
    with_negative = not use_box and background.any() and rng.uniform() < NEGATIVE_POINT
    masks, points, boxes = [], [], []
    for whole, parts in chosen:
        point = None
        if use_box:
            target = whole if not parts or rng.uniform() < 0.7 else parts[rng.integers(len(parts))]
            boxes.append(noisy_box(rng, target))
        elif with_negative:
            points.append([sample_point(rng, whole), sample_point(rng, background)])
            target = whole
        else:
            point = sample_point(rng, whole)
            containing = [whole] + [p for p in parts if p[int(point[1]), int(point[0])]]
            target = containing[rng.integers(len(containing))]
            points.append([point])
        masks.append(target)
    target = F.adaptive_avg_pool2d(torch.as_tensor(np.stack(masks)[:, None], dtype=torch.float32), embedding.shape[-1] * 4)
    n = len(chosen)
    if use_box:
        box_tensor = torch.as_tensor(np.stack(boxes), dtype=torch.float32)
        point_tensor, label_tensor = None, None
        low_res, iou = decode(sam, embedding, None, None, box_tensor, None, multimask=False)
    else:
        box_tensor = None
        point_tensor = torch.tensor(points, dtype=torch.float32)
        label_tensor = torch.tensor([[1, 0] if with_negative else [1]] * n, dtype=torch.int)
        cues = guidance_cues(embedding, masks) if with_negative and rng.uniform() < GUIDED else (None, None)
        low_res, iou = decode(sam, embedding, point_tensor, label_tensor, None, None, multimask=not with_negative, cues=cues)
    logits = upscale(low_res)
    losses = mask_losses(logits, target)
    best = losses.argmin(1)
    rows = torch.arange(n)
    total = losses[rows, best].mean() + F.mse_loss(iou, true_iou(logits, target))
    parts = [float(losses[rows, best].mean().detach())]
    previous = low_res[rows, best][:, None].detach()
    predicted = full_size(logits[rows, best])
    all_points = point_tensor if point_tensor is not None else torch.zeros(n, 0, 2)
    all_labels = label_tensor if label_tensor is not None else torch.zeros(n, 0, dtype=torch.int)
    for _ in range(CORRECTIVE):
        clicks = [error_click(rng, predicted[i], masks[i]) for i in range(n)]
        all_points = torch.cat([all_points, torch.tensor([[c[0]] for c in clicks], dtype=torch.float32)], 1)
        all_labels = torch.cat([all_labels, torch.tensor([[c[1]] for c in clicks], dtype=torch.int)], 1)
        with_box = box_tensor if box_tensor is not None and rng.uniform() < 0.5 else None
        multimask = rng.uniform() < CORRECTIVE_MULTIMASK
        low_res, iou = decode(sam, embedding, all_points, all_labels, with_box, previous, multimask=multimask)
        logits = upscale(low_res)
        losses = mask_losses(logits, target)
        best = losses.argmin(1)
        loss = losses[rows, best]
        total = total + loss.mean() + F.mse_loss(iou, true_iou(logits, target))
        parts.append(float(loss.mean().detach()))
        previous = low_res[rows, best][:, None].detach()
        predicted = full_size(logits[rows, best])
    return total / (1 + CORRECTIVE), parts


def step_scenes(step: int, batch: int = BATCH) -> list:
    return [training_scene(step * batch + i) for i in range(batch)]


def learning_rate(step: int, steps: int) -> float:
    """Linear warm-up, the full rate until ``HOLD``, then inverse-square-root decay (decaying from step 30, the
    250-step run was at a third of the rate by its end and had not learnt to follow prompts). Independent of the
    run's length, so that the weights after N steps are the same whatever ``--steps`` was (a long run may be
    stopped at any checkpoint and published with ``--resume --steps N``)."""
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    return LR * min(1.0, math.sqrt(HOLD / (step + 1)))


def train_step(sam, head, optimiser, step: int, steps: int, batch: int = BATCH, appearance_weight: float = APPEARANCE):
    """One optimisation step on the step's own scenes → (loss, per-prompt-round mask losses + the appearance loss)."""
    for group in optimiser.param_groups:
        group["lr"] = learning_rate(step, steps)
    scenes = step_scenes(step, batch)
    images = sam.preprocess(torch.stack([torch.as_tensor(s.image).permute(2, 0, 1).float() for s in scenes]))
    embeddings = sam.image_encoder(images)
    rng = np.random.default_rng([1, step])
    losses, rounds = [], []
    for i, scene in enumerate(scenes):
        found = image_loss(sam, embeddings[i : i + 1], scene, rng)
        if found is not None:
            losses.append(found[0])
            rounds.append(found[1])
    appearance = appearance_loss(head, embeddings, images)
    loss = torch.stack(losses).mean() + appearance_weight * appearance
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([*sam.parameters(), *head.parameters()], 1.0)
    optimiser.step()
    return float(loss.detach()), np.mean(rounds, 0).tolist() + [float(appearance.detach())]


def make_optimiser(sam, head):
    return torch.optim.AdamW([*sam.parameters(), *head.parameters()], lr=LR, weight_decay=WEIGHT_DECAY)


def save_weights(sam, out: Path, log: dict):
    """The weights (segment_anything key names) and the training log, each written under a temporary name and
    then renamed over the earlier file (models/publish.py ``replace_file``): a kill mid-write leaves the old one."""
    from safetensors.torch import save

    state = {k: v.detach().float().contiguous() for k, v in sam.state_dict().items()}
    # The decoder's head count is not visible in the weights: the loader reads it from <name>_config.json.
    # (With SAM's 8 heads, the decoder's cross-attention has 64 / 2 / 8 = 4 dimensions per head: trained that way,
    # the miniature ignored its prompts and drew every object, point IoU 0.36 after 150 and after 350 steps.)
    blobs = {out: save(state, metadata={"format": "pt", "trained_by": "scripts/miniature_sam/train.py"}),
             out.with_name(out.stem + "_config.json"): (json.dumps({"decoder_num_heads": CONFIG["decoder_num_heads"]}) + "\n").encode(),
             out.with_suffix(".log.json"): (json.dumps(log, indent=1) + "\n").encode()}
    for path, blob in blobs.items():
        replace_file(path, lambda f, blob=blob: f.write(blob))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--appearance", type=float, default=APPEARANCE, help="weight of the appearance loss")
    parser.add_argument("--threads", type=int, default=1)  # 1: on a busy machine 2 threads were 4.5x slower
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sam, head = build_miniature(), appearance_head()
    sam.train()
    optimiser = make_optimiser(sam, head)
    state_file = args.out.with_suffix(".state.pt")
    start, history = 0, []
    if args.resume and state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        sam.load_state_dict(state["model"])
        head.load_state_dict(state["appearance_head"])
        optimiser.load_state_dict(state["optimiser"])
        start, history = state["step"], state["history"]
        print(f"resumed at step {start}")
    if start > args.steps:
        raise SystemExit(f"{state_file} is at step {start}, past --steps {args.steps}")
    began = time.perf_counter()
    for step in range(start, args.steps):
        loss, rounds = train_step(sam, head, optimiser, step, args.steps, appearance_weight=args.appearance)
        history.append([step, loss] + rounds)
        if step % 20 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss:.4f}  rounds {' '.join(f'{r:.3f}' for r in rounds)}  "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)
        if (step + 1) % args.checkpoint_every == 0:
            state = {"model": sam.state_dict(), "appearance_head": head.state_dict(),
                     "optimiser": optimiser.state_dict(), "step": step + 1, "history": history}
            replace_file(state_file, lambda f: torch.save(state, f))  # a kill mid-write keeps the last state
    params = sum(p.numel() for p in sam.parameters())
    log = {"config": CONFIG, "batch": BATCH, "steps": args.steps, "appearance": args.appearance, "parameters": params,
           "torch": torch.__version__, "first_steps": history[:3], "history": history}
    save_weights(sam.eval(), args.out, log)
    print(f"wrote {args.out} ({params} parameters)")


if __name__ == "__main__":
    main()
