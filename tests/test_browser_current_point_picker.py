"""The point picker in the graph editor users have today (ComfyUI v0.8.0, newest frontend, both canvas modes;
setup in tests/current_frontend.py): it adds, drags and deletes points (click, drag, ctrl-click, shift-click),
is active only for point segmentation, uses no deprecated LiteGraph accessor, and the exported workflow holds
exactly the node's inputs; a run queued from the browser shows its progress and its output image. Issue 19:
each picker edit is one undo step and the picker works after undo/redo (Nodes 2.0 reloads the graph), it finds
the image through a Reroute and, after ImageScale, from a Preview Image once run, and it takes no clicks with
`points` linked. Screenshots go to ``$POINT_PICKER_SCREENSHOTS`` (a folder; ``docs`` for the README's pictures)
or the test's tmp folder.
"""

import json
import os
import re
from pathlib import Path

from current_frontend import PERCEIVE_WIDGETS, POINT_TASK, SKIPS

pytestmark = SKIPS


SETUP = """async ([image]) => {
  app.graph.clear();
  app.canvas.ds.scale = 1;  // a loaded template may have left the view zoomed out
  app.canvas.ds.offset = [0, 0];
  const load = LiteGraph.createNode("LoadImage");
  load.pos = [40, 60];
  app.graph.add(load);
  const widget = load.widgets.find((w) => w.name === "image");
  widget.value = image;
  widget.callback?.(image);
  const perceive = LiteGraph.createNode("DiceptionPerceiveTask");
  perceive.pos = [420, 60];
  app.graph.add(perceive);
  load.connect(0, perceive, perceive.findInputSlot("image"));
  perceive.widgets.find((w) => w.name === "task").value = "point segmentation";
  window.__perceive = perceive;
  window.__load = load;
  app.canvas.setDirty(true, true);
}"""

POINTS = "() => JSON.parse(window.__perceive.widgets.find((w) => w.name === 'points').value).map((p) => [p.x, p.y])"
PICKER_SHOWS = "() => { const p = window.__perceive.diceptionPicker; return !!p.image() && p.el.canvas.clientWidth > 50 && !!p.el.canvas.offsetParent; }"


def set_up_picker(editor):
    editor.clear()
    editor.js(SETUP, ["picker.png"])
    editor.page.wait_for_function(PICKER_SHOWS, timeout=30000)
    editor.page.wait_for_timeout(300)


def at(editor, px, py):
    """Client coordinates of image pixel (px, py), once the live picker has laid its image out (after an undo the
    picker takes its place on the page within one of its refreshes)."""
    handle = editor.page.wait_for_function("([x, y]) => window.__perceive.diceptionPicker?.imageToClient(x, y)", arg=[px, py], timeout=10000)
    return handle.json_value()


def click(editor, point, modifier=None):
    x, y = at(editor, *point)
    if modifier:
        editor.page.keyboard.down(modifier)
    editor.page.mouse.click(x, y)
    if modifier:
        editor.page.keyboard.up(modifier)
    editor.page.wait_for_timeout(150)
    return [tuple(p) for p in editor.js(POINTS)]


def drawn_pixel(editor, point):
    """Colour the picker's canvas shows at image pixel ``point`` (what the user sees there)."""
    return editor.js("""([x, y]) => { const p = window.__perceive.diceptionPicker, c = p.el.canvas;
        const [cx, cy] = p.imageToClient(x, y), r = c.getBoundingClientRect(), k = c.width / r.width;
        return Array.from(c.getContext('2d').getImageData(Math.round((cx - r.left) * k), Math.round((cy - r.top) * k), 1, 1).data); }""", list(point))


def shows(editor, point, colour, within=3) -> bool:
    """The picker shows ``colour`` at image pixel ``point``, up to the canvas's resampling (±3 of 255 per channel:
    the drawn image is scaled, and browsers round its pixels differently)."""
    drawn = drawn_pixel(editor, point)[:3]
    assert all(abs(a - b) <= within for a, b in zip(drawn, colour)), f"at {point}: {drawn}, expected {colour} ± {within}"
    return True


def screenshot_dir(tmp_path):
    folder = Path(os.environ.get("POINT_PICKER_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_point_picker_adds_drags_and_deletes_points_and_saves_only_the_node_inputs(editor, tmp_path):
    page = editor.page
    set_up_picker(editor)
    # Item 1: the image is shown in the picker (in Nodes 2.0 too) and points are drawn on it.
    assert shows(editor, (20, 15), [200, 120, 40])
    assert shows(editor, (67, 30), [40, 160, 220])
    targets = [(20, 15), (70, 30), (10, 50)]
    for target in targets:
        points = click(editor, target)
    assert points == targets
    red = drawn_pixel(editor, (20, 15))
    assert red[0] > 200 and red[1] < 120, red  # point 1 is drawn where it was put
    x, y = at(editor, 70, 30)
    x2, y2 = at(editor, 60, 45)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move((x + x2) / 2, (y + y2) / 2, steps=4)
    page.mouse.move(x2, y2, steps=4)
    page.mouse.up()
    page.wait_for_timeout(150)
    assert [tuple(p) for p in editor.js(POINTS)] == [(20, 15), (60, 45), (10, 50)]
    # Item 3: ctrl-click and shift-click delete a point.
    assert click(editor, (10, 50), "Control") == [(20, 15), (60, 45)]
    assert click(editor, (20, 15), "Shift") == [(60, 45)]
    assert click(editor, (30, 30)) == [(60, 45), (30, 30)]

    # Item 7: the exported workflow holds exactly the node's inputs.
    with page.expect_download() as download:
        editor.js("() => app.extensionManager.command.execute('Comfy.ExportWorkflow')")
    saved = json.loads(Path(download.value.path()).read_text())
    node = next(n for n in saved["nodes"] if n["type"] == "DiceptionPerceiveTask")
    assert len(node["widgets_values"]) == len(PERCEIVE_WIDGETS), node["widgets_values"]
    values = dict(zip(PERCEIVE_WIDGETS, node["widgets_values"]))
    assert values["task"] == POINT_TASK and values["points"] == '[{"x":60,"y":45},{"x":30,"y":30}]'
    assert values["point_order"] == "yx (training data)"
    if "widgets_values_named" in node:
        assert list(node["widgets_values_named"]) == PERCEIVE_WIDGETS

    # Item 10: no deprecated LiteGraph accessor is used by the picker.
    ours = [d for d in editor.js("window.__deprecations") if "point_picker.js" in d]
    assert not ours, ours[0]

    shot = screenshot_dir(tmp_path) / f"point_picker_{editor.mode}.png"
    bounds = editor.js("""() => { const r = window.__perceive.diceptionPicker.el.root.getBoundingClientRect();
        return [r.left, r.top, r.width, r.height]; }""")
    left, top = max(0, bounds[0] - 400), max(0, bounds[1] - 300)
    page.screenshot(path=str(shot), clip={"x": left, "y": top, "width": bounds[0] + bounds[2] + 20 - left, "height": bounds[1] + bounds[3] + 40 - top})
    assert shot.stat().st_size > 1000
    assert not editor.errors, editor.errors


def test_point_picker_is_active_only_for_point_segmentation(editor):
    """Item 2: off the point task the points are kept (greyed out) and clicks add none; issue 27: so with task_name
    set, which names the task that runs."""
    set_up_picker(editor)
    assert click(editor, (20, 15)) == [(20, 15)]
    editor.js("() => { const w = window.__perceive.widgets.find((w) => w.name === 'task'); w.value = 'depth'; w.callback?.('depth'); }")
    editor.page.wait_for_function("window.__perceive.diceptionPicker.el.root.dataset.enabled === 'false'", timeout=5000)
    status = editor.js("window.__perceive.diceptionPicker.el.status.textContent")
    assert "ignored" in status, status
    assert click(editor, (70, 30)) == [(20, 15)]
    assert click(editor, (20, 15), "Shift") == [(20, 15)]
    editor.js("() => { const w = window.__perceive.widgets.find((w) => w.name === 'task'); w.value = 'point segmentation'; w.callback?.('point segmentation'); }")
    editor.page.wait_for_function("window.__perceive.diceptionPicker.el.root.dataset.enabled === 'true'", timeout=5000)
    assert click(editor, (70, 30)) == [(20, 15), (70, 30)]
    # Issue 27: with task_name naming an adapter's task, that task runs: `task` is greyed out and relabelled (on
    # the canvas, and as Nodes 2.0 draws it), and the picker takes no points; clearing task_name undoes both.
    set_task_name = "(v) => { const w = window.__perceive.widgets.find((w) => w.name === 'task_name'); w.value = v; w.callback?.(v); }"
    editor.js(set_task_name, "red objects")
    editor.page.wait_for_function("window.__perceive.diceptionPicker.el.root.dataset.enabled === 'false'", timeout=5000)
    task = editor.js("() => { const w = window.__perceive.widgets.find((w) => w.name === 'task'); return [!!w.disabled, w.label]; }")
    assert task[0] and "red objects" in task[1], task
    assert "red objects" in editor.js("window.__perceive.diceptionPicker.el.status.textContent")
    if editor.mode == "nodes2":
        task_row = editor.page.locator(f"[data-node-id='{editor.js('window.__perceive.id')}'] [data-widget-name='task']")
        task_row.locator("[role=combobox][aria-disabled=true]").wait_for(timeout=5000)
        assert "red objects" in task_row.inner_text(), task_row.inner_text()
    assert click(editor, (40, 40)) == [(20, 15), (70, 30)]
    editor.js(set_task_name, "")
    editor.page.wait_for_function("window.__perceive.diceptionPicker.el.root.dataset.enabled === 'true'", timeout=5000)
    assert editor.js("() => window.__perceive.widgets.find((w) => w.name === 'task').disabled") is False


RUN_GRAPH = """() => {
  const model = LiteGraph.createNode("DiceptionLoad");
  model.pos = [40, 420];
  app.graph.add(model);
  for (const [name, value] of [["base_model", "tiny_sd3"], ["checkpoint", "diception_tiny.pth"], ["dtype", "fp32"]])
    model.widgets.find((w) => w.name === name).value = value;
  const perceive = window.__perceive;
  model.connect(0, perceive, perceive.findInputSlot("model"));
  // A fresh seed: the run must execute, not come from the server's cache of an earlier test's run.
  for (const [name, value] of [["resolution", 64], ["steps", 3], ["guidance", 1.0], ["seed", 1 + Math.floor(Math.random() * 1e9)]])
    perceive.widgets.find((w) => w.name === name).value = value;
  const preview = LiteGraph.createNode("PreviewImage");
  preview.pos = [800, 60];
  app.graph.add(preview);
  perceive.connect(0, preview, 0);
  window.__preview = preview;
  window.__titles = [];
  window.__progress = [];
  app.api.addEventListener("progress", (e) => window.__progress.push([e.detail.node, e.detail.value, e.detail.max]));
  new MutationObserver(() => window.__titles.push(document.title))
    .observe(document.querySelector("title"), { childList: true, subtree: true, characterData: true });
}"""


def test_a_run_queued_from_the_browser_shows_progress_and_its_output_image(editor):
    page = editor.page
    set_up_picker(editor)
    click(editor, (70, 30))
    editor.js(RUN_GRAPH)
    page.get_by_role("button", name="Run").first.click()
    page.wait_for_function("window.__preview.imgs?.[0]?.naturalWidth > 0", timeout=120000)
    # The page received every step (1, 2, 3 of 3) and showed the node's progress in its title. Which percentages the
    # title shows depends on how many messages arrive within one frame (on a fast machine all three at once).
    progress = editor.js("window.__progress")
    assert [v for _, v, m in progress if m == 3] == [1, 2, 3], progress
    steps = [int(m.group(1)) for t in editor.js("window.__titles") for m in [re.search(r"\]\[(\d+)%\] DiceptionPerceiveTask", t)] if m]
    assert steps and max(steps) > 0, editor.js("window.__titles")
    output = editor.js("[window.__preview.imgs[0].src, window.__preview.imgs[0].naturalWidth, window.__preview.imgs[0].naturalHeight]")
    assert "type=temp" in output[0] and output[1:] == [90, 60], output
    if editor.mode == "nodes2":  # drawn by the node's DOM, not the canvas
        shown = page.locator(f"[data-node-id='{editor.js('window.__preview.id')}'] img[src*='type=temp']")
        assert shown.count() >= 1 and shown.first.is_visible()


CHANGE_TRACKER = "app.extensionManager.workflow.activeWorkflow.changeTracker"
LIVE_PERCEIVE = "() => { window.__perceive = app.graph.getNodeById(window.__perceive.id); return true; }"


QUEUES = f"() => [{CHANGE_TRACKER}.undoQueue.length, {CHANGE_TRACKER}.redoQueue.length]"


def undo_redo(editor, keys, points):
    """Press ``keys`` (Control+z / Control+y) on the canvas, wait until the change tracker has restored a state (its
    queues moved and it is no longer restoring: the points may already be ``points`` before, e.g. when the undone
    step is another node's move), then check the graph shows ``points``."""
    before = editor.js(QUEUES)
    editor.page.keyboard.press(keys)
    editor.page.wait_for_function(f"""(before) => {{ const queues = ({QUEUES})();
        return !{CHANGE_TRACKER}._restoringState && (queues[0] !== before[0] || queues[1] !== before[1]); }}""",
        arg=before, timeout=10000)
    live = editor.js("() => app.graph.getNodeById(window.__perceive.id)?.widgets.find((w) => w.name === 'points').value")
    assert live == json.dumps([{"x": x, "y": y} for x, y in points], separators=(",", ":")), (keys, live)
    editor.js(LIVE_PERCEIVE)
    editor.page.wait_for_function(PICKER_SHOWS, timeout=10000)
    editor.page.wait_for_timeout(200)


def test_each_picker_edit_is_one_undo_step_and_the_picker_works_after_undo_and_redo(editor):
    """Issue 19: in Nodes 2.0 undo/redo loads the graph again (new node objects) while the node's component keeps
    the old picker element; the picker must take its place and keep working. Each click, drag and delete is one
    undo step (before, one Ctrl+Z removed every point since the last canvas action)."""
    page = editor.page
    set_up_picker(editor)
    editor.js(f"() => {CHANGE_TRACKER}.captureCanvasState()")  # the set-up graph is the first state
    page.wait_for_timeout(200)
    click(editor, (20, 15))
    click(editor, (70, 30))
    x, y = at(editor, 70, 30)
    x2, y2 = at(editor, 60, 45)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x2, y2, steps=6)
    page.mouse.up()
    page.wait_for_timeout(150)
    assert click(editor, (20, 15), "Shift") == [(60, 45)]
    page.mouse.click(640, 760)  # focus the canvas, off every node: Ctrl+Z is the editor's, not a text field's
    undo_redo(editor, "Control+z", [(20, 15), (60, 45)])  # the delete
    undo_redo(editor, "Control+z", [(20, 15), (70, 30)])  # the whole drag
    undo_redo(editor, "Control+z", [(20, 15)])
    undo_redo(editor, "Control+y", [(20, 15), (70, 30)])
    # The picker on the page is the live node's, and it still adds, deletes and clears points.
    assert editor.js("() => window.__perceive.diceptionPicker.el.root.isConnected")
    assert editor.js("() => document.querySelectorAll('.diception-point-picker').length") == 1
    assert shows(editor, (67, 25), [40, 160, 220])
    assert click(editor, (10, 50)) == [(20, 15), (70, 30), (10, 50)]
    assert click(editor, (70, 30), "Control") == [(20, 15), (10, 50)]
    editor.js("() => window.__perceive.diceptionPicker.el.clear.click()")
    assert editor.js(POINTS) == []
    # Undo of another node's move reloads the graph too.
    load = editor.js("() => app.canvas.ds.convertOffsetToCanvas([window.__load.pos[0] + 60, window.__load.pos[1] - 15])")
    page.mouse.move(*load)
    page.mouse.down()
    page.mouse.move(load[0] + 20, load[1] + 300, steps=5)
    page.mouse.up()
    page.mouse.click(640, 760)
    undo_redo(editor, "Control+z", [])
    assert click(editor, (30, 30)) == [(30, 30)]
    assert not editor.errors, editor.errors


REROUTE = """() => {
  const load = window.__load, perceive = window.__perceive;
  const reroute = LiteGraph.createNode("Reroute");
  reroute.pos = [300, 420];
  app.graph.add(reroute);
  load.connect(0, reroute, 0);
  reroute.connect(0, perceive, perceive.findInputSlot("image"));
  window.__reroute = reroute;
}"""

FITS = """(e) => e.scrollWidth <= e.clientWidth + 1 && e.scrollHeight <= e.clientHeight + 1 && e.getBoundingClientRect().right
    <= window.__perceive.diceptionPicker.el.root.getBoundingClientRect().right + 1"""


def test_the_picker_shows_the_image_through_a_reroute_and_after_imagescale_once_run(editor):
    """Issue 19: the picker found the image only with Load Image wired straight in. Through a Reroute it shows Load
    Image's picture; after ImageScale (which makes a new image when the graph runs) it says what to do, and once a
    Preview Image on ImageScale's output has run it shows that picture, with points in its pixels."""
    page = editor.page
    set_up_picker(editor)
    editor.js(REROUTE)
    page.wait_for_function(PICKER_SHOWS, timeout=10000)
    page.wait_for_timeout(300)
    assert shows(editor, (20, 15), [200, 120, 40])
    assert click(editor, (20, 15)) == [(20, 15)]
    editor.js("""() => { const scale = LiteGraph.createNode("ImageScale"); scale.pos = [40, 420]; app.graph.add(scale);
        window.__load.connect(0, scale, 0); scale.connect(0, window.__perceive, window.__perceive.findInputSlot("image"));
        window.__scale = scale; }""")
    page.wait_for_function("() => /connect a Preview Image/.test(window.__perceive.diceptionPicker.why) && !window.__perceive.diceptionPicker.image()", timeout=5000)
    # Issue 27: the hint wraps inside the picker (it was one canvas line, cut off at both ends).
    hint = editor.page.locator(".diception-point-picker-hint").filter(has_text="connect a Preview Image")
    assert hint.count() == 1 and hint.evaluate(FITS) and hint.evaluate("(e) => e.getClientRects()[0].height > 20"), hint.inner_text()
    size = editor.js("() => ['width', 'height'].map((n) => window.__scale.widgets.find((w) => w.name === n).value)")
    editor.js("""() => { const preview = LiteGraph.createNode("PreviewImage"); preview.pos = [420, 600]; app.graph.add(preview);
        window.__scale.connect(0, preview, 0); window.__preview = preview; }""")
    page.get_by_role("button", name="Run").first.click()  # Perceive Task feeds no output: only the preview branch runs
    page.wait_for_function("window.__preview.imgs?.[0]?.naturalWidth > 0", timeout=120000)
    page.wait_for_function(PICKER_SHOWS, timeout=10000)
    page.wait_for_timeout(300)
    assert editor.js("() => { const i = window.__perceive.diceptionPicker.image(); return [i.naturalWidth, i.naturalHeight]; }") == size
    sx, sy = size[0] / 90, size[1] / 60
    assert shows(editor, (round(20 * sx), round(15 * sy)), [200, 120, 40])
    assert shows(editor, (round(67 * sx), round(30 * sy)), [40, 160, 220])
    assert click(editor, (round(70 * sx), round(30 * sy))) == [(20, 15), (round(70 * sx), round(30 * sy))]
    assert not editor.errors, editor.errors


def test_linked_points_make_the_picker_read_only(editor):
    """With `points` linked (PerSAM Segment's points, here a primitive string) the run uses the linked points: the
    picker says so and takes no clicks."""
    set_up_picker(editor)
    assert click(editor, (20, 15)) == [(20, 15)]
    editor.js("""() => { const text = LiteGraph.createNode("PrimitiveStringMultiline") || LiteGraph.createNode("PrimitiveString");
        text.pos = [40, 600]; app.graph.add(text); const p = window.__perceive;
        const slot = p.inputs.findIndex((i) => i.name === 'points');
        text.connect(0, p, slot); window.__text = text; }""")
    editor.page.wait_for_function("window.__perceive.diceptionPicker.el.root.dataset.enabled === 'false'", timeout=5000)
    status = editor.js("window.__perceive.diceptionPicker.el.status.textContent")
    assert "linked" in status and "the run uses those" in status, status
    assert editor.js(f"({FITS})(window.__perceive.diceptionPicker.el.status)"), status  # issue 27: wraps, not cut with "…"
    assert click(editor, (70, 30)) == [(20, 15)]
    assert click(editor, (20, 15), "Shift") == [(20, 15)]
