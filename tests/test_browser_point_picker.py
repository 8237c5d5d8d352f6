"""The graph editor (legacy frontend bundled with the 2024-03 test engine) in headless Debian Chromium:
the pack's nodes are registered, Perceive Task shows a point picker, two clicks become two points in the
``points`` widget (KJNodes JSON, image pixels), a shift-click deletes one, and the value is saved with the
workflow. Writes a screenshot of the picker (``POINT_PICKER_SCREENSHOT`` or the test's tmp folder)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)"
)

SETUP = """async ([image]) => {
  const load = LiteGraph.createNode("LoadImage");
  load.pos = [40, 60];
  app.graph.add(load);
  const widget = load.widgets.find((w) => w.name === "image");
  widget.value = image;
  widget.callback?.(image);
  const perceive = LiteGraph.createNode("DiceptionPerceiveTask");
  perceive.pos = [380, 60];
  app.graph.add(perceive);
  load.connect(0, perceive, perceive.inputs.findIndex((i) => i.name === "image"));
  perceive.widgets.find((w) => w.name === "task").value = "point segmentation";
  app.canvas.ds.offset = [0, 0];
  app.canvas.ds.scale = 1;
  window.__perceive = perceive;
  window.__load = load;
  return true;
}"""

# Screen position of image pixel (px, py) in the picker, from the same layout the extension uses.
TO_SCREEN = """([px, py]) => {
  const node = window.__perceive, img = window.__load.imgs[0];
  const picker = node.widgets.find((w) => w.name === "point_picker");
  const width = node.size[0], top = picker.last_y ?? picker.top;
  const scale = Math.min((width - 20) / img.naturalWidth, (220 - 10) / img.naturalHeight);
  const x = (width - img.naturalWidth * scale) / 2 + px * scale, y = top + 5 + py * scale;
  const rect = app.canvas.canvas.getBoundingClientRect(), ds = app.canvas.ds;
  return [rect.left + (node.pos[0] + x + ds.offset[0]) * ds.scale, rect.top + (node.pos[1] + y + ds.offset[1]) * ds.scale];
}"""


def test_point_picker_in_the_legacy_frontend(comfy, tmp_path):
    if comfy.build.at_least(0, 1, 0):
        pytest.skip(f"the legacy frontend bundled with the 2024-03 build; {comfy.build.label} serves the current "
                    "frontend (comfyui-frontend-package), tested in its own browser tests")
    playwright = pytest.importorskip("playwright.sync_api")
    image = np.zeros((60, 90, 3), np.uint8)
    image[:, :45] = (200, 120, 40)
    image[20:40, 55:80] = (40, 160, 220)
    Image.fromarray(image).save(comfy.dirs["input"] / "picker.png")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(comfy.url)
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=60000)
        registered = page.evaluate("Object.keys(LiteGraph.registered_node_types)")
        for name in ("DiceptionLoad", "DiceptionPerceiveTask", "PersamReference", "PersamSegment", "DiceptionRGBToDepth"):
            assert name in registered
        page.evaluate("() => app.graph.clear()")
        page.evaluate(SETUP, ["picker.png"])
        page.wait_for_function("window.__load.imgs && window.__load.imgs[0] && window.__load.imgs[0].naturalWidth > 0", timeout=30000)
        page.evaluate("() => app.graph.setDirtyCanvas(true, true)")
        page.wait_for_timeout(500)

        targets = [(20, 15), (70, 30), (10, 50)]
        for target in targets:
            x, y = page.evaluate(TO_SCREEN, list(target))
            page.mouse.click(x, y)
            page.wait_for_timeout(150)
        points = json.loads(page.evaluate("window.__perceive.widgets.find((w) => w.name === 'points').value"))
        assert len(points) == 3
        for point, (tx, ty) in zip(points, targets):
            assert abs(point["x"] - tx) <= 1 and abs(point["y"] - ty) <= 1, points

        x, y = page.evaluate(TO_SCREEN, list(targets[2]))
        page.keyboard.down("Shift")
        page.mouse.click(x, y)
        page.keyboard.up("Shift")
        page.wait_for_timeout(150)
        points = json.loads(page.evaluate("window.__perceive.widgets.find((w) => w.name === 'points').value"))
        assert [(p["x"], p["y"]) for p in points] == targets[:2]

        saved = page.evaluate("JSON.stringify(app.graph.serialize())")
        node = next(n for n in json.loads(saved)["nodes"] if n["type"] == "DiceptionPerceiveTask")
        assert json.dumps(points, separators=(",", ":")) in node["widgets_values"]

        shot = Path(os.environ.get("POINT_PICKER_SCREENSHOT", tmp_path / "point_picker.png"))
        bounds = page.evaluate("""() => { const n = window.__perceive, ds = app.canvas.ds;
            return [n.pos[0] * ds.scale + ds.offset[0], (n.pos[1] - 30) * ds.scale, n.size[0] * ds.scale, (n.size[1] + 40) * ds.scale]; }""")
        page.screenshot(path=str(shot), clip={"x": 0, "y": max(0, bounds[1]), "width": bounds[0] + bounds[2] + 20, "height": bounds[3]})
        browser.close()
    assert shot.stat().st_size > 1000
    assert not errors, errors
