"""The built-in example set of the sixth template: "highlight the red objects" (workflows/images/diception_examples/
red_objects): 12 small scenes of coloured discs and boxes on textured grounds (images/NN.png) and, as the answer,
the red shapes in white on black (targets/NN.png). Seeded, so the files are reproducible.

    python scripts/make_example_set.py
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "workflows" / "images" / "diception_examples" / "red_objects"
COLOURS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 210), "yellow": (225, 200, 40)}
SIZE, COUNT = 96, 12


def scene(rng):
    ground = (rng.random((SIZE, SIZE, 3)) * 60 + rng.integers(60, 160, 3)).astype(np.uint8)
    image, target = Image.fromarray(ground), Image.new("RGB", (SIZE, SIZE), "black")
    draw, answer = ImageDraw.Draw(image), ImageDraw.Draw(target)
    names = ["red"] + list(rng.choice(list(COLOURS), size=int(rng.integers(1, 4))))
    for name in names:
        x, y, r = int(rng.integers(10, SIZE - 10)), int(rng.integers(10, SIZE - 10)), int(rng.integers(6, 16))
        box = [x - r, y - r, x + r, y + r]
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(box, fill=COLOURS[name])
        (answer.ellipse if shape == draw.ellipse else answer.rectangle)(box, fill="white" if name == "red" else "black")
    return image, target


def main() -> int:
    rng = np.random.default_rng(18)
    for role in ("images", "targets"):
        (FOLDER / role).mkdir(parents=True, exist_ok=True)
    for i in range(COUNT):
        image, target = scene(rng)
        image.save(FOLDER / "images" / f"{i:02}.png")
        target.save(FOLDER / "targets" / f"{i:02}.png")
    print(FOLDER.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
