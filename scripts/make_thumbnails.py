"""Pictures for the template browser: each API workflow of ``workflows/api`` runs on the tiny built-in example
(the test-engine ComfyUI with the tiny random models, as scripts/demo.py does), and ``workflows/<title>.jpg``
shows the graph's input photo(s) above the images it produced. Current ComfyUI serves a pack's template
pictures as ``/api/workflow_templates/<pack>/<template>.jpg``, the same name as the template's ``.json``.

    python scripts/make_thumbnails.py        (after scripts/make_workflows.py)

The tiny models are random, so DICEPTION's answers look like noise; the pictures are still real outputs.
"""

import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.demo import tiny  # noqa: E402
from scripts.make_workflows import TITLES, ui_path  # noqa: E402
from scripts.local_comfyui import LocalComfyUI  # noqa: E402

SIDE = 512  # square cards
MAX_OUTPUTS = 3


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


def main() -> int:
    with tempfile.TemporaryDirectory() as work:
        engine = LocalComfyUI(work)
        try:
            for image in (ROOT / "workflows" / "images").glob("*.png"):
                shutil.copy(image, engine.dirs["input"])
            for name in TITLES:
                workflow = tiny(json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text()))
                for node in workflow.values():  # a few iterations of PerSAM-F suffice for a picture
                    if node["class_type"] == "PersamReference":
                        node["inputs"]["iterations"] = 20
                entry = engine.client.run(workflow)
                inputs = [Image.open(ROOT / "workflows" / "images" / node["inputs"]["image"])
                          for node in workflow.values() if node["class_type"] == "LoadImage"]
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
    sys.exit(main())
