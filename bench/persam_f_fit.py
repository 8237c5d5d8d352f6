"""PerSAM-F fitting: the official loop (decoder re-run every iteration) vs ours (decoder once), on the tiny SAM.

    python bench/persam_f_fit.py [--iterations 1000] [--baseline-iterations 100]

Prints both times per iteration, the speed-up ratio, and the largest difference of the learned weights
(both loops run the same number of iterations for that comparison).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.persam import encode_image, load_sam  # noqa: E402
from models.persam.features import mask_on_grid  # noqa: E402
from models.persam.location_prior import location_prior, select_points, target_embedding  # noqa: E402
from models.persam.predict import predict  # noqa: E402
from models.persam.scale_aware import dice_loss, mixing_weights, scale_aware_weights, sigmoid_focal_loss  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


def official_loop(sam, features, points, labels, target, iterations):
    """As persam_f.py: the decoder runs inside every iteration."""
    ab = torch.nn.Parameter(torch.ones(2, 1) / 3)
    optimizer = torch.optim.AdamW([ab], lr=1e-3, eps=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations)
    flat_target = target.reshape(1, -1).float()
    for _ in range(iterations):
        logits = predict(sam, features, points, labels, multimask=True).logits_high.flatten(1)
        mixed = (logits * mixing_weights(ab)).sum(0, keepdim=True)
        loss = dice_loss(mixed, flat_target) + sigmoid_focal_loss(mixed, flat_target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return mixing_weights(ab).detach().flatten()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--baseline-iterations", type=int, default=100, help="official loop iterations timed")
    args = parser.parse_args()
    fixtures = ROOT / "tests" / "fixtures" / "persam"
    sam = load_sam(fixtures / "tiny_sam.pth")
    ref = load_file(str(fixtures / "persam_reference.safetensors"))
    features = encode_image(sam, ref["ref_image"].numpy())
    mask = ref["ref_mask_rgb"][..., 0].numpy()
    embedding = target_embedding(features.features, mask_on_grid(sam, mask, features.features.shape[-2:]), "max_mean")
    points, labels = select_points(location_prior(embedding, features, sam), negative=False)
    target = torch.as_tensor(mask > 0)

    n = args.baseline_iterations
    start = time.perf_counter()
    baseline = official_loop(sam, features, points, labels, target, n)
    official = (time.perf_counter() - start) / n

    start = time.perf_counter()
    logits = predict(sam, features, points, labels, multimask=True).logits_high
    ours_weights, _ = scale_aware_weights(logits, target, iterations=args.iterations)
    ours = (time.perf_counter() - start) / args.iterations
    same_n, _ = scale_aware_weights(logits, target, iterations=n)

    print(f"official loop (decoder every iteration): {official * 1e3:8.3f} ms/iteration ({n} iterations timed)")
    print(f"ours (decoder once):                      {ours * 1e3:8.3f} ms/iteration ({args.iterations} iterations)")
    print(f"speed-up: {official / ours:.1f}x")
    print(f"max |weights difference| after {n} iterations: {(baseline - same_n).abs().max().item():.2e}")
    print(f"weights after {args.iterations} iterations: {[round(w, 6) for w in ours_weights.tolist()]}")


if __name__ == "__main__":
    main()
