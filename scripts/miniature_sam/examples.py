"""The PerSAM templates' example pictures (workflows/images/example_*.png) from the synthetic PerSeg, so that the
templates run on the miniature SAM (scripts/make_thumbnails.py) show real masks of synthetic photos.

    python -m scripts.miniature_sam.examples

One subject with two looks (``SUBJECT`` of ``world.perseg(0)``), photos shown 2× (nearest neighbour; the
miniature SAM resizes them back to its 128 px input):
- example_reference.png: photo 0, the subject's mask in the alpha channel as ComfyUI's mask editor paints it
  (transparent = the mask; Load Image's MASK output);
- example_photo.png: a photo of the first look with the look-alike beside the subject;
- example_reference_1.png, example_reference_2.png: photo 0 and photo 4 (the second look), plain, for the
  several-references template, whose ``box`` has one line per reference: ``BOXES``;
- example_negative.png: a photo with the look-alike, its mask in the alpha channel.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.miniature_sam import world  # noqa: E402

FOLDER = ROOT / "workflows" / "images"
SUBJECT, PHOTO, NEGATIVE = 7, 3, 2
SCALE = 2


def big(array: np.ndarray) -> np.ndarray:
    return array.repeat(SCALE, 0).repeat(SCALE, 1)


def with_mask(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    alpha = np.where(big(mask), 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([big(image), alpha]), "RGBA")


def box_line(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(big(mask))
    return f"{xs.min()}, {ys.min()}, {xs.max()}, {ys.max()}"


def example_photos():
    subject = world.perseg(0)[SUBJECT]
    return subject, subject.photos[0], subject.photos[world.PHOTOS // 2]


def boxes() -> str:
    """The several-references template's ``box``: line 1 for reference 1, line 2 for reference 2."""
    _, first, second = example_photos()
    return f"{box_line(first.mask)}\n{box_line(second.mask)}"


def main() -> int:
    subject, first, second = example_photos()
    files = {
        "example_reference.png": with_mask(first.image, first.mask),
        "example_photo.png": Image.fromarray(big(subject.photos[PHOTO].image)),
        "example_reference_1.png": Image.fromarray(big(first.image)),
        "example_reference_2.png": Image.fromarray(big(second.image)),
        "example_negative.png": with_mask(subject.photos[NEGATIVE].image, subject.photos[NEGATIVE].distractor),
    }
    for name, image in files.items():
        image.save(FOLDER / name)
        print(FOLDER.relative_to(ROOT) / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
