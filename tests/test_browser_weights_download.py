"""First use in the graph editor users have today (ComfyUI v0.8.0, newest frontend, both canvas modes): a template
whose DICEPTION checkpoint is absent lists it in the Missing Models panel; queued from the browser, Load DICEPTION
downloads it from the local stand-in hub (tests/stand_in_hub.py, ``HF_ENDPOINT``) with its progress shown in the page
title, and the template runs. The SD3 base and encoders are switched to the tiny test model (the stand-in serves only
the DICEPTION checkpoint; SD3-medium's pinned sha256 could not be matched by a tiny file)."""

import re

from current_frontend import SKIPS, TINY_CHECKPOINT, open_pack_templates, shipped_workflows, template_card

pytestmark = SKIPS


WATCH = """() => {
  window.__titles = []; window.__progress = []; window.__done = null;
  app.api.addEventListener("progress", (e) => window.__progress.push([String(e.detail.node), e.detail.value, e.detail.max]));
  app.api.addEventListener("execution_success", () => { window.__done = "success"; });
  app.api.addEventListener("execution_error", (e) => { window.__done = "error: " + e.detail.exception_message; });
  new MutationObserver(() => window.__titles.push(document.title))
    .observe(document.querySelector("title"), { childList: true, subtree: true, characterData: true });
}"""


def test_a_template_with_an_absent_checkpoint_downloads_it_with_progress_and_runs(editor, current_comfy, stand_in_hub):
    """On the shared v0.8.0 server (tests/current_frontend.py), which downloads from the stand-in hub; the
    checkpoint is removed again afterwards, so the other browser tests see it absent."""
    page, mode = editor.page, editor.mode
    folder = current_comfy.dirs["models"] / "diception"
    (folder / "DICEPTION_v1.pth").unlink(missing_ok=True)  # absent for each canvas mode
    try:
        editor.clear()
        name = next(n for n in shipped_workflows() if n.startswith("DICEPTION 1"))
        dialog = open_pack_templates(page)
        template_card(dialog, name).click()
        dialog.wait_for(state="hidden", timeout=20000)
        page.get_by_text("View details").first.click(timeout=20000)  # the Missing Models panel names the checkpoint
        panel = page.get_by_text("Missing Models").first.locator("xpath=ancestor::*[.//text()[contains(., 'DICEPTION_v1.pth')]][1]")
        panel.wait_for(timeout=10000)
        assert re.search(r"DICEPTION_v1\.pth\s+diception", panel.inner_text())
        page.keyboard.press("Escape")
        loader = editor.js("""(dtype) => { const load = app.graph.nodes.find((n) => n.type === 'DiceptionLoad');
            const set = (node, name, value) => { node.widgets.find((w) => w.name === name).value = value; };
            set(load, 'base_model', 'tiny_sd3'); for (const k of ['clip_l', 'clip_g', 't5xxl']) set(load, k, 'auto');
            set(load, 'dtype', dtype);  // another value per mode: the server runs the loader again
            const perceive = app.graph.nodes.find((n) => n.type === 'DiceptionPerceiveTask');
            set(perceive, 'resolution', 64);
            return String(load.id); }""", "fp32" if mode == "classic" else "auto")
        editor.js(WATCH)
        page.get_by_role("button", name="Run").first.click()
        page.wait_for_function("window.__done !== null", timeout=240000)
        assert editor.js("window.__done") == "success"
        assert (folder / "DICEPTION_v1.pth").read_bytes() == TINY_CHECKPOINT
        bar = [(v, m) for node, v, m in editor.js("window.__progress") if node == loader]
        assert len(bar) >= 3 and bar[-1] == (len(TINY_CHECKPOINT), len(TINY_CHECKPOINT)), bar
        shown = {int(m.group(1)) for t in editor.js("window.__titles") for m in [re.search(r"\[(\d+)%\] DiceptionLoad", t)] if m}
        assert any(0 < p < 100 for p in shown), editor.js("window.__titles")  # the title showed the download moving
    finally:
        (folder / "DICEPTION_v1.pth").unlink(missing_ok=True)
