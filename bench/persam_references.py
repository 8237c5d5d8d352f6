"""PerSAM from several references and a negative, on the synthetic set of tests/persam_synthetic.py.

    python bench/persam_references.py [--tests 24] [--seed 0]

With the tiny random SAM of tests/tiny_models.py (its features separate the set's colour patterns; its
decoder is random, so mask IoU means little): 1 reference (look A) vs both looks vs both + the look-alike
as a negative, for PerSAM (decoder guided by the best-matching reference, and by the mean embedding) and
PerSAM-F. Prints mean IoU, how often the positive point lands on the subject, and distractor picks.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from models.persam import encode_images, load_sam  # noqa: E402
from persam_synthetic import build_set, evaluate, make_reference  # noqa: E402
from tiny_models import build_sam_checkpoint  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sam = load_sam(build_sam_checkpoint(Path(tmp)))
    references, negative, test = build_set(args.seed, args.tests)
    features = encode_images(sam, [s.image for s in test])
    distractors = sum(bool(s.distractor.any()) for s in test)
    print(f"{len(test)} test images ({distractors} with the look-alike), references: look A, look B; negative: the look-alike")
    print(f"{'mode':9} {'references':22} {'guidance':9} {'mean IoU':>9} {'point on subject':>17} {'distractor picks':>17}")
    for fine_tune in (False, True):
        for label, count, neg in (("1 (look A)", 1, None), ("2 (looks A, B)", 2, None), ("2 + 1 negative", 2, negative)):
            start = time.perf_counter()
            reference = make_reference(sam, references, neg, count, fine_tune=fine_tune)
            for guidance in (("best", "mean") if not fine_tune and count > 1 else ("-",)):
                scores = evaluate(sam, reference, test, None if guidance == "-" else guidance, features)
                print(f"{'PerSAM-F' if fine_tune else 'PerSAM':9} {label:22} {guidance:9} {scores.mean_iou:9.3f} "
                      f"{scores.on_subject:17.3f} {scores.distractor_picks:>11}/{distractors}"
                      f"   ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
