"""Shared setup of the browser tests on the graph editor users have today: ComfyUI v0.8.0 with the newest
comfyui-frontend-package, in headless Debian Chromium, in both canvas modes (classic LiteGraph canvas and
"Nodes 2.0", setting ``Comfy.VueNodes.Enabled``): a v0.8.0 server with the tiny models, the browser, and an
``editor`` page per canvas mode with what it logged. A pytest plugin (tests/conftest.py), so the server is started
once per test session and shared by tests/test_browser_current_frontend.py
(search, templates), tests/test_browser_current_point_picker.py (the point picker, a run from the browser) and
tests/test_browser_weights_download.py (a template's absent checkpoint downloaded from the stand-in hub, which
this server is pointed at: ``HF_ENDPOINT``). The browser and its pages live for one module: while open,
Playwright's sync API keeps an asyncio event loop running in the main thread, which breaks ``asyncio.run`` in
later tests.

ComfyUI v0.8.0 comes from ``.cache/comfyui-v0.8.0`` (``.ci/run`` unpacks ``../shared/comfyui``); without it the
modules are skipped, saying so.
"""

import json
import os
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CURRENT_COMFYUI = ROOT / ".cache" / "comfyui-v0.8.0"
WORKFLOWS = ROOT / "workflows"
PACK = "comfyui-diception-persam"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
POINT_TASK = "point segmentation"
# The node's own inputs, in order (control_after_generate is the frontend's companion of `seed`).
PERCEIVE_WIDGETS = ["task", "category", "points", "steps", "guidance", "seed", "control_after_generate", "resolution", "point_order", "batch_size", "task_name"]


def frontend_version():
    try:
        return metadata.version("comfyui_frontend_package")
    except metadata.PackageNotFoundError:
        return "missing"


VERSION = f"comfyui-v0.8.0-frontend-{frontend_version()}"
SKIPS = [
    pytest.mark.skipif(not (CURRENT_COMFYUI / "main.py").is_file(),
                       reason=f"no ComfyUI v0.8.0 at {CURRENT_COMFYUI} (.ci/run unpacks ../shared/comfyui/comfyui-v0.8.0.tar.gz)"),
    pytest.mark.skipif(os.environ.get("CI") != "true" and CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)"),
]


TINY_CHECKPOINT = (ROOT / "tests/fixtures/diception/model/diception_tiny.pth").read_bytes()


@pytest.fixture(scope="session")
def stand_in_hub():
    """The local stand-in for Hugging Face, serving the tiny checkpoint as DICEPTION_v1.pth at 3 MB/s (about 3 s:
    the progress is seen moving)."""
    from stand_in_hub import StandIn

    hub = StandIn()
    hub.add_hub("Canyu/DICEPTION", "DICEPTION_v1.pth", TINY_CHECKPOINT)
    hub.rate = 3 << 20
    yield hub
    hub.close()


@pytest.fixture(scope="session")
def current_comfy(tmp_path_factory, stand_in_hub):
    from scripts.local_comfyui import LocalComfyUI

    workdir = tmp_path_factory.mktemp("comfy_v080")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("COMFYUI_DIR", raising=False)  # these modules are about v0.8.0, whatever the suite runs on
        env.setenv("HF_ENDPOINT", stand_in_hub.url)  # the server inherits them: downloads come from the stand-in
        env.setenv("HF_TOKEN", "")
        env.setenv("HF_HOME", str(workdir / "hf_home"))
        try:
            engine = LocalComfyUI(workdir, comfyui=CURRENT_COMFYUI)
        except (FileNotFoundError, RuntimeError) as e:
            pytest.fail(str(e))
    for image in (WORKFLOWS / "images").iterdir():  # the templates' pictures, and the example set's folder
        (shutil.copytree if image.is_dir() else shutil.copy)(image, engine.client.dirs["input"] / image.name)
    picture = np.zeros((60, 90, 3), np.uint8)
    picture[:, :45] = (200, 120, 40)
    picture[20:40, 55:80] = (40, 160, 220)
    Image.fromarray(picture).save(engine.client.dirs["input"] / "picker.png")
    yield engine.client
    engine.stop()


@pytest.fixture(scope="module")  # not longer: Playwright's sync API holds an event loop in the main thread while open
def chromium_browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


class Editor:
    """One page of the graph editor in one canvas mode, with what it logged."""

    def __init__(self, page, mode, url):
        self.page, self.mode, self.url = page, mode, url
        self.console, self.errors = [], []
        self.template_pictures = set()  # the pack's template pictures this page fetched, since it opened
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("response", self._record_template_picture)

    def _record_template_picture(self, response):
        from urllib.parse import unquote

        path = unquote(response.url.split("?")[0])
        if f"/workflow_templates/{PACK}/" in path and path.endswith(".jpg") and response.status == 200:
            self.template_pictures.add(path.rsplit("/", 1)[-1][: -len(".jpg")])

    def js(self, script, arg=None):
        return self.page.evaluate(script, arg)

    def clear(self):
        self.page.keyboard.press("Escape")
        self.js("() => { app.clean?.(); app.graph.clear(); }")  # and the last runs' outputs (node ids start again)


@pytest.fixture(scope="module", params=["classic", "nodes2"], ids=lambda mode: f"{VERSION}-{mode}")
def editor(request, current_comfy, chromium_browser):
    mode = request.param
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    editor = Editor(page, mode, current_comfy.url)
    page.goto(current_comfy.url)
    page.wait_for_function("window.app && app.graph && window.LiteGraph && app.extensionManager?.setting", timeout=120000)
    assert page.evaluate("window.__COMFYUI_FRONTEND_VERSION__") == frontend_version()
    page.keyboard.press("Escape")  # the first-run template browser
    page.evaluate("""async (vue) => {
        await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', vue);
        await app.extensionManager.setting.set('Comfy.PromptFilename', false);
    }""", mode == "nodes2")
    page.wait_for_timeout(500)
    # Every deprecation warning LiteGraph raises, with the stack that caused it.
    page.evaluate("""() => { window.__deprecations = []; LiteGraph.alwaysRepeatWarnings = true;
        LiteGraph.onDeprecationWarning.push((message) => window.__deprecations.push(message + '\\n' + new Error().stack)); }""")
    yield editor
    page.close()


def open_pack_templates(page):
    """The template browser, on the pack's own category."""
    page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    dialog = page.locator("[role=dialog]").filter(has=page.get_by_test_id("template-workflows-content")).last
    dialog.get_by_text(PACK).first.click()
    dialog.locator("[data-testid^='template-workflow-']").first.wait_for(timeout=15000)
    return dialog


def template_card(dialog, name):
    card = dialog.get_by_test_id(f"template-workflow-{name}")
    card.scroll_into_view_if_needed(timeout=10000)
    return card


def shipped_workflows():
    return {path.stem: json.loads(path.read_text()) for path in sorted(WORKFLOWS.glob("*.json"))}
