"""Real ComfyUI servers for node tests: the session fixture ``comfy`` (a ``ComfyClient``), once per ComfyUI build.

``comfyui_builds()`` (scripts/local_comfyui.py) lists the builds: the 2024-03 test engine always, ComfyUI v0.8.0
when ``.cache/comfyui-v0.8.0`` exists (scripts/setup.sh unpacks it from ``../shared``), and every folder named in
``COMFYUI_DIRS``. A server test runs on each of them, with the build in its id (``test_x[comfyui-v0.8.0]``; select
builds with ``-k``). Each server runs ``main.py --cpu`` on a free loopback port with this pack linked in, separate
input/output/temp folders and the tiny test models (scripts/local_comfyui.py); it is stopped by PID when the
session moves on to the next build. ``comfy.build`` says which build a test runs on; tests that depend on the
version skip with a reason naming it (``require_version``).
"""

import shutil
from pathlib import Path

import pytest

from scripts.queue_workflow import ComfyClient, ComfyError, error_message  # noqa: F401 (re-exported for tests)
from scripts.local_comfyui import LocalComfyUI, comfyui_builds

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BUILDS = comfyui_builds()


@pytest.fixture(scope="session", params=BUILDS, ids=[build.label for build in BUILDS])
def comfy_build(request):
    """One ComfyUI build (``ComfyBuild``: path, label, version) per parametrization."""
    return request.param


@pytest.fixture(scope="session")
def comfy(comfy_build, tmp_path_factory):
    try:
        engine = LocalComfyUI(tmp_path_factory.mktemp(comfy_build.label), comfy_build)
    except (FileNotFoundError, RuntimeError) as e:
        pytest.fail(f"{comfy_build.label}: {e}")
    yield engine.client
    engine.stop()


def require_version(comfy: ComfyClient, *version, why: str) -> None:
    """Skip, with a reason naming both versions, on a build older than ``version`` (e.g. ``0, 8, 0``)."""
    if not comfy.build.at_least(*version):
        pytest.skip(f"{why}: needs ComfyUI v{'.'.join(map(str, version))}+, this is {comfy.build.label}")


def save_fixture_image(comfy: ComfyClient, source: Path, name: str) -> str:
    """Put an image into the server's input folder (as LoadImage expects) and return its name."""
    shutil.copy(source, comfy.dirs["input"] / name)
    return name
