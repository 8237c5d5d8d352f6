"""PerSAM's masks measured: the miniature SAM (scripts/miniature_sam) on the synthetic PerSeg, with trivial baselines.

    python bench/persam_quality.py [--seeds 0 1 2] [--weights scripts/miniature_sam/sam_miniature.safetensors]

Prints (1) the miniature SAM's own quality on held-out objects: IoU from one ground-truth point and from a box,
against the box itself as the mask; (2) per PerSeg seed (each seed: other subjects, other photos) the PerSAM table:
mean IoU on held-out photos for PerSAM and PerSAM-F with one reference, on the subjects with parts, with two
references on the two-look subjects (decoder guided by the best-matching reference or by the mean embedding),
with a negative on photos showing a look-alike, the DreamBooth training mask, the video carry; the point-on-subject
rate, the IoU on the photos where the point landed on the subject, and distractor picks; each against the best
constant mask and a random point on the same photos; (3) the mean and the spread (max − min) over seeds of each
figure, from which tests/test_persam_miniature.py takes its margins.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scripts.miniature_sam import measure, world  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weights", type=Path, default=measure.WEIGHTS)
    parser.add_argument("--scenes", type=int, default=60, help="held-out scenes for the SAM's own quality")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sam = measure.load_miniature(args.weights)
    start = time.perf_counter()
    quality = measure.sam_quality(sam, args.scenes)
    print(f"Miniature SAM on {quality['objects']} held-out objects: IoU from one point {quality['point']:.3f} "
          f"(best of 3 outputs {quality['point_oracle']:.3f}), from a box {quality['box']:.3f}; "
          f"baseline, the box as the mask: {quality['box_as_mask']:.3f}   ({time.perf_counter() - start:.0f} s)\n")
    tables = []
    for seed in args.seeds:
        start = time.perf_counter()
        table = measure.persam_table(sam, world.perseg(seed))
        tables.append(table)
        print(f"PerSeg seed {seed} ({time.perf_counter() - start:.0f} s; timings inflated on a busy machine)")
        print(measure.HEADER)
        for key, row in table.items():
            if isinstance(row, measure.Row):
                print(row.line())
        print(f"DreamBooth training mask (PerSAM mask grown 4 px): covers {table['dreambooth/coverage']:.3f} of the subject\n")
    print("Orderings in mean IoU, per seed (difference better - worse; one-shot: PerSAM - best constant):")
    for name, better, worse in measure.ORDERINGS:
        diffs = [measure.difference(t, better, worse) for t in tables]
        print(f"  {name:55} " + " ".join(f"{d:+.3f}" for d in diffs) + f"   min {min(diffs):+.3f}")
    picks = [(t["negative/without"].mask_on_distractor, t["negative/with"].mask_on_distractor,
              t["negative/without"].photos) for t in tables]
    print("  masks on the look-alike, without -> with a negative:  " + "  ".join(f"{a} -> {b} of {n}" for a, b, n in picks))
    print("\nMean over seeds (spread max - min):")
    for key in tables[0]:
        if isinstance(tables[0][key], measure.Row):
            values = np.array([t[key].mean_iou for t in tables])
            print(f"  {key:22} mean IoU {values.mean():.3f} (spread {values.max() - values.min():.3f}), "
                  f"best constant {np.mean([t[key].baseline_iou for t in tables]):.3f}; point on the subject "
                  f"{np.mean([t[key].on_subject for t in tables]):.2f} (random point "
                  f"{np.mean([t[key].baseline_on_subject for t in tables]):.2f}), IoU when it is "
                  f"{np.nanmean([t[key].iou_on_subject for t in tables]):.3f}")


if __name__ == "__main__":
    main()
