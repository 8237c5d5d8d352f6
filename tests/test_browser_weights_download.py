"""First use in the graph editor users have today (ComfyUI v0.8.0, newest frontend, both canvas modes): a template
whose DICEPTION checkpoint is absent lists it in the Missing Models panel; queued from the browser, Load DICEPTION
downloads it from the local stand-in hub (tests/stand_in_hub.py, ``HF_ENDPOINT``) with its progress shown in the page
title, and the template runs. The SD3 base and encoders are switched to the tiny test model (the stand-in serves only
the DICEPTION checkpoint; SD3-medium's pinned sha256 could not be matched by a tiny file)."""

import re
import shutil

import pytest
from current_frontend import CURRENT_COMFYUI, SKIPS, VERSION, WORKFLOWS, Editor, chromium_browser  # noqa: F401
from stand_in_hub import StandIn
from current_frontend import open_pack_templates, shipped_workflows, template_card

from scripts.local_comfyui import LocalComfyUI

pytestmark = SKIPS
TINY = (WORKFLOWS.parent / "tests/fixtures/diception/model/diception_tiny.pth").read_bytes()


@pytest.fixture(scope="module")
def hub_comfy(tmp_path_factory):
    hub = StandIn()
    hub.add_hub("Canyu/DICEPTION", "DICEPTION_v1.pth", TINY)
    hub.rate = 3 << 20  # 3 s: the bar is seen moving
    workdir = tmp_path_factory.mktemp("comfy_hub")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_ENDPOINT", hub.url)
        env.setenv("HF_TOKEN", "")
        env.setenv("HF_HOME", str(workdir / "hf_home"))
        try:
            engine = LocalComfyUI(workdir, comfyui=CURRENT_COMFYUI)
        except (FileNotFoundError, RuntimeError) as e:
            hub.close()
            pytest.fail(str(e))
    for image in (WORKFLOWS / "images").iterdir():
        if image.is_file():
            shutil.copy(image, engine.client.dirs["input"] / image.name)
    yield engine.client, hub
    engine.stop()
    hub.close()


WATCH = """() => {
  window.__titles = []; window.__progress = []; window.__done = null;
  app.api.addEventListener("progress", (e) => window.__progress.push([String(e.detail.node), e.detail.value, e.detail.max]));
  app.api.addEventListener("execution_success", () => { window.__done = "success"; });
  app.api.addEventListener("execution_error", (e) => { window.__done = "error: " + e.detail.exception_message; });
  new MutationObserver(() => window.__titles.push(document.title))
    .observe(document.querySelector("title"), { childList: true, subtree: true, characterData: true });
}"""


@pytest.mark.parametrize("mode", ["classic", "nodes2"], ids=lambda mode: f"{VERSION}-{mode}")
def test_a_template_with_an_absent_checkpoint_downloads_it_with_progress_and_runs(hub_comfy, chromium_browser, mode):
    comfy, hub = hub_comfy
    folder = comfy.dirs["models"] / "diception"
    (folder / "DICEPTION_v1.pth").unlink(missing_ok=True)  # absent again for each canvas mode
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 800})
    editor = Editor(page, mode, comfy.url)
    try:
        page.goto(comfy.url)
        page.wait_for_function("window.app && app.graph && window.LiteGraph && app.extensionManager?.setting", timeout=120000)
        page.keyboard.press("Escape")
        page.evaluate("async (vue) => { await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', vue); }", mode == "nodes2")
        page.wait_for_timeout(500)
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
        assert (folder / "DICEPTION_v1.pth").read_bytes() == TINY
        bar = [(v, m) for node, v, m in editor.js("window.__progress") if node == loader]
        assert len(bar) >= 3 and bar[-1] == (len(TINY), len(TINY)), bar
        shown = {int(m.group(1)) for t in editor.js("window.__titles") for m in [re.search(r"\[(\d+)%\] DiceptionLoad", t)] if m}
        assert any(0 < p < 100 for p in shown), editor.js("window.__titles")  # the title showed the download moving
    finally:
        page.close()
