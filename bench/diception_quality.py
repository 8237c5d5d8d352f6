"""The miniature DICEPTION's quality (scripts/miniature_diception) on held-out scenes, with two baselines from the same run.

    python bench/diception_quality.py [--scenes 32] [--steps 1] [--guidance 1.0] [--merge-tolerance 20] [--without-photo]

Every answer goes through the pack's loader (``models.diception.load_pipeline``), engine (``DicePipeline``) and
decoders (models/decoders); see scripts/miniature_diception/measure.py for each figure. Baselines: the untrained
tiny model (the same architecture at its random initialisation: the base folder's transformer) and the best
constant answer (the per-pixel mean of 200 training scenes' targets; masks thresholded where the training scenes
get the best IoU; its entity answer decoded with or without the photo, whichever scores higher). Entity answers
are decoded with the scene's photo, as RGB-to-Masks Decoder does with its photo input connected. Prints the
figures, each task's error as a ratio of the constant answer's, the acceptance (every error ≤ 0.5× the constant's, point-segmentation IoU ≥ 0.7), the spread over scenes (for the test's
margins) and the VAE's reconstruction PSNR on the same held-out scenes.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.decoders import MERGE_TOLERANCE  # noqa: E402
from scripts.miniature_diception import measure  # noqa: E402

FIGURES = ("depth AbsRel", "depth δ1", "normal mean angle (°)", "point seg IoU", "entity IoU", "semantic mIoU")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=32, help="held-out scenes (at least 24)")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (1: the one-step answers)")
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--merge-tolerance", type=float, default=MERGE_TOLERANCE,
                        help="decode_instances' merge_tolerance for the entity answers (ΔE; default: the node's)")
    parser.add_argument("--without-photo", action="store_true", help="decode the entity answers without the scene's "
                        "photo (RGB-to-Masks Decoder's photo input unconnected)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.time()
    cache = measure.temporary_cache()
    scenes = measure.held_out(args.scenes)
    miniature = measure.load_miniature(cache)
    with tempfile.TemporaryDirectory() as tmp:
        untrained = measure.load_untrained(cache, tmp)
        answerers = {
            "miniature": measure.Answerer(miniature, steps=args.steps, guidance=args.guidance),
            "untrained tiny model": measure.Answerer(untrained, steps=args.steps, guidance=args.guidance),
        }
        photo = not args.without_photo
        rows = {name: measure.evaluate(answer, scenes, args.merge_tolerance, photo) for name, answer in answerers.items()}
        rows["best constant answer"] = measure.evaluate_constant(scenes, args.merge_tolerance, photo)
    print(f"{len(scenes)} held-out scenes, {args.steps} step(s), guidance {args.guidance}, "
          f"entity merge_tolerance {args.merge_tolerance}, {'without' if args.without_photo else 'with'} the photo\n")
    print("| answer | " + " | ".join(FIGURES) + " |")
    print("|---|" + "---|" * len(FIGURES))
    for name, figures in rows.items():
        print(f"| {name} | " + " | ".join(f"{figures[f]:.3f}" for f in FIGURES) + " |")
    errors = {name: measure.errors(figures) for name, figures in rows.items()}
    print("\nerror as a ratio of the best constant answer's (acceptance: ≤ 0.5)")
    print("| answer | " + " | ".join(measure.ERRORS) + " |")
    print("|---|" + "---|" * len(measure.ERRORS))
    for name in ("miniature", "untrained tiny model"):
        print(f"| {name} | " + " | ".join(f"{errors[name][e] / errors['best constant answer'][e]:.2f}" for e in measure.ERRORS) + " |")
    passed = all(errors["miniature"][e] <= 0.5 * errors["best constant answer"][e] for e in measure.ERRORS)
    passed &= rows["miniature"]["point seg IoU"] >= 0.7
    print(f"\nacceptance: {'pass' if passed else 'FAIL'}")
    print("semantic IoU per class:", {k: round(v, 3) for k, v in rows["miniature"]["semantic IoU per class"].items()})
    print("\nspread over scenes (miniature): " + ", ".join(
        f"{k} min {min(v):.3f} p10 {np.percentile(v, 10):.3f} median {np.median(v):.3f}"
        for k, v in rows["miniature"]["per_scene"].items()))
    print("\nVAE reconstruction PSNR (dB) on the same scenes:", {k: round(v, 1) for k, v in measure.vae_psnr(miniature, scenes).items()})
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
