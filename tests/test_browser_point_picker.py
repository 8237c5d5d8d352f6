"""The graph editor (legacy frontend bundled with the 2024-03 test engine) in headless Debian Chromium:
the pack's nodes are registered, Perceive Task shows a point picker, clicks become points in the
``points`` widget (KJNodes JSON, image pixels), a drag moves one, shift-click and ctrl-click delete one, and
the saved workflow holds exactly the node's inputs; with `task_name` set, `task` is greyed out and relabelled. Writes a screenshot of the picker (``POINT_PICKER_SCREENSHOT`` or the test's tmp folder)."""

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

# Screen position of image pixel (px, py) in the picker (the extension's own mapping).
TO_SCREEN = "([px, py]) => window.__perceive.diceptionPicker.imageToClient(px, py)"
POINTS = "() => JSON.parse(window.__perceive.widgets.find((w) => w.name === 'points').value).map((p) => [p.x, p.y])"


def click(page, point, modifier=None):
    x, y = page.evaluate(TO_SCREEN, list(point))
    if modifier:
        page.keyboard.down(modifier)
    page.mouse.click(x, y)
    if modifier:
        page.keyboard.up(modifier)
    page.wait_for_timeout(150)
    return [tuple(p) for p in page.evaluate(POINTS)]


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
        page.wait_for_function("!!window.__perceive.diceptionPicker.image()", timeout=30000)
        page.wait_for_timeout(500)

        targets = [(20, 15), (70, 30), (10, 50)]
        for target in targets:
            points = click(page, target)
        assert points == targets
        x, y = page.evaluate(TO_SCREEN, [70, 30])
        x2, y2 = page.evaluate(TO_SCREEN, [60, 45])
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x2, y2, steps=6)
        page.mouse.up()
        page.wait_for_timeout(150)
        assert [tuple(p) for p in page.evaluate(POINTS)] == [(20, 15), (60, 45), (10, 50)]
        assert click(page, (10, 50), "Shift") == [(20, 15), (60, 45)]
        assert click(page, (60, 45), "Control") == [(20, 15)]
        assert click(page, (70, 30)) == [(20, 15), (70, 30)]

        # Issue 27: task_name naming an adapter's task greys out and relabels `task`; the picker stops taking points.
        page.evaluate("() => { const w = window.__perceive.widgets.find((w) => w.name === 'task_name'); w.value = 'red objects'; w.callback?.(w.value); }")
        page.wait_for_function("window.__perceive.diceptionPicker.el.root.dataset.enabled === 'false'", timeout=5000)
        task = page.evaluate("() => { const w = window.__perceive.widgets.find((w) => w.name === 'task'); return [!!w.disabled, w.label]; }")
        assert task[0] and "red objects" in task[1], task
        assert click(page, (10, 50)) == [(20, 15), (70, 30)]
        page.evaluate("() => { const w = window.__perceive.widgets.find((w) => w.name === 'task_name'); w.value = ''; w.callback?.(w.value); }")
        page.wait_for_function("window.__perceive.diceptionPicker.el.root.dataset.enabled === 'true'", timeout=5000)
        assert page.evaluate("() => window.__perceive.widgets.find((w) => w.name === 'task').disabled") is False

        # Saved with the workflow: exactly the node's inputs (issue 11 item 7), none of the picker's.
        saved = page.evaluate("JSON.stringify(app.graph.serialize())")
        node = next(n for n in json.loads(saved)["nodes"] if n["type"] == "DiceptionPerceiveTask")
        assert node["widgets_values"] == ["point segmentation", "none", '[{"x":20,"y":15},{"x":70,"y":30}]', 28, 2, 0,
                                          "randomize", 768, "yx (training data)", 4, ""]

        # Issue 27: the line where Save DICEPTION Adapter shows what it wrote (web/saved_path.js) is not saved either.
        saved = page.evaluate("""() => { const node = LiteGraph.createNode("DiceptionSaveAdapter"); app.graph.add(node);
            node.onExecuted({ text: ['loras/diception/x_00001.safetensors'] });
            return [node.diceptionSavedPath.textContent, JSON.parse(JSON.stringify(node.serialize())).widgets_values]; }""")
        assert "x_00001.safetensors" in saved[0] and saved[1] == ["highlight"], saved

        shot = Path(os.environ.get("POINT_PICKER_SCREENSHOT", tmp_path / "point_picker.png"))
        bounds = page.evaluate("""() => { const r = window.__perceive.diceptionPicker.el.root.getBoundingClientRect();
            return [r.left, r.top, r.width, r.height]; }""")
        top = max(0, bounds[1] - 300)
        page.screenshot(path=str(shot), clip={"x": 0, "y": top, "width": bounds[0] + bounds[2] + 20, "height": bounds[1] + bounds[3] + 20 - top})
        browser.close()
    assert shot.stat().st_size > 1000
    assert not errors, errors
