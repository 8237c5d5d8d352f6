"""Pictures for the template browser: each API workflow of ``workflows/api`` runs on the built-in example (the
test-engine ComfyUI with the built-in models, as scripts/demo.py maps them), and
``workflows/<title>.jpg`` shows the graph's input photo(s) above the images it produced. Current ComfyUI serves a
pack's template pictures as ``/api/workflow_templates/<pack>/<template>.jpg``, the same name as the template's ``.json``.

    python scripts/make_thumbnails.py [persam_ ...]   (after scripts/make_example_set.py and scripts/make_workflows.py)

With arguments, only the templates whose API name starts with one of them (``persam_``: the PerSAM pictures alone,
after the miniature SAM changed).

DICEPTION's templates run on the miniature DICEPTION (scripts/miniature_diception) and scenes of its world
(workflows/images/example_scene.png, example_red_scene.png), in one step as it was taught: real depth, normals and
masks, and DICEPTION 5's adapter trained with the node's defaults on the built-in set from that world. PerSAM 2
finds a blue box of that world (its reference: example_scene_reference.png) in example_scene.png with the miniature
SAM, and the miniature DICEPTION segments the box from PerSAM's point.
PerSAM runs on the miniature SAM (scripts/miniature_sam, trained on a synthetic world) with the templates' own
settings, on photos of that world (scripts/make_example_set.py): its masks are real masks of the subject. On the
input photos, what PerSAM Reference is given is drawn: a painted subject mask outlined in yellow, a reference's box
(its ``box`` line) as a yellow frame, a negative's mask (the look-alike) outlined in cyan.
"""

import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.demo import tiny  # noqa: E402
from scripts.make_workflows import TITLES, ui_path  # noqa: E402
from scripts.local_comfyui import LocalComfyUI  # noqa: E402

SIDE = 512  # square cards
MAX_OUTPUTS = 3
SUBJECT, NEGATIVE = (255, 215, 30), (40, 220, 255)  # how a reference's mask or box and a negative's mask are drawn
MASK_ROLES = {"mask": SUBJECT, "mask_2": SUBJECT, "negative_masks": NEGATIVE}  # PerSAM Reference's MASK inputs


def reference_marks(workflow: dict) -> dict:
    """Load Image node id → [(role colour, None for its painted mask, or a box (x0, y0, x1, y1))]: what PerSAM
    Reference takes from each picture (one picture per Load Image; box line i belongs to the i-th reference,
    image's before image_2's)."""
    marks = {}
    for node in workflow.values():
        if node["class_type"] != "PersamReference":
            continue
        inputs = node["inputs"]
        for name, colour in MASK_ROLES.items():
            if isinstance(inputs.get(name), list):
                marks.setdefault(inputs[name][0], []).append((colour, None))
        sources = [inputs[name][0] for name in ("image", "image_2") if isinstance(inputs.get(name), list)]
        for source, line in zip(sources, str(inputs.get("box", "")).splitlines()):
            if line.strip():
                marks.setdefault(source, []).append((SUBJECT, tuple(float(v) for v in line.split(","))))
    return marks


def outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The mask's pixels within ``width`` pixels of its edge."""
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def marked(image: Image.Image, marks: list) -> Image.Image:
    """The picture with the outline of its painted mask (Load Image's MASK: 1 − alpha) and its boxes drawn."""
    rgb = image.convert("RGB")
    width = max(1, rgb.width // 64)
    for colour, box in marks:
        if box is None and image.mode == "RGBA":
            pixels = np.asarray(rgb).copy()
            pixels[outline(np.asarray(image)[..., 3] < 128, width)] = colour
            rgb = Image.fromarray(pixels)
        elif box is not None:
            ImageDraw.Draw(rgb).rectangle(box, outline=colour, width=width)
    return rgb


def tile_row(images: list, width: int, height: int) -> Image.Image:
    """Pictures side by side, each fitted (aspect kept) into an equal cell on a dark background."""
    row = Image.new("RGB", (width, height), (24, 24, 28))
    cell = width // max(1, len(images))
    for i, image in enumerate(images):
        fitted = ImageOps.contain(image.convert("RGB"), (cell - 8, height - 8))
        row.paste(fitted, (i * cell + (cell - fitted.width) // 2, (height - fitted.height) // 2))
    return row


def thumbnail(inputs: list, outputs: list) -> Image.Image:
    card = Image.new("RGB", (SIDE, SIDE), (24, 24, 28))
    card.paste(tile_row(inputs, SIDE, SIDE // 2), (0, 0))
    card.paste(tile_row(outputs[:MAX_OUTPUTS], SIDE, SIDE // 2), (0, SIDE // 2))
    return card


def main(prefixes=()) -> int:
    names = [name for name in TITLES if not prefixes or name.startswith(tuple(prefixes))]
    if not names:
        raise SystemExit(f"no template's API name starts with {' or '.join(prefixes)}; names: {', '.join(TITLES)}")
    with tempfile.TemporaryDirectory() as work:
        engine = LocalComfyUI(work)
        try:
            for image in (ROOT / "workflows" / "images").glob("*.png"):
                shutil.copy(image, engine.dirs["input"])
            for name in names:
                workflow = tiny(json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text()))
                entry = engine.client.run(workflow)
                marks = reference_marks(workflow)
                inputs = [marked(Image.open(ROOT / "workflows" / "images" / node["inputs"]["image"]), marks.get(key, []))
                          for key, node in workflow.items() if node["class_type"] == "LoadImage"]
                outputs = [Image.open(io.BytesIO(engine.client.view(image))) for key in sorted(entry["outputs"], key=int)
                           for image in entry["outputs"][key].get("images", [])]
                outputs = [image for image in outputs if not image.mode.startswith("I")]  # 16-bit depth files: shown by the preview
                target = ui_path(name).with_suffix(".jpg")
                thumbnail(inputs, outputs).save(target, quality=85)
                print(target.relative_to(ROOT))
        finally:
            engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
