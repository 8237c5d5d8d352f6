"""Real ComfyUI servers for node tests: the session fixture ``comfy`` (a ``ComfyClient``), once per ComfyUI build.

``comfyui_builds()`` (scripts/local_comfyui.py) lists the builds: the 2024-03 test engine always, ComfyUI v0.8.0
when ``.cache/comfyui-v0.8.0`` exists (scripts/setup.sh unpacks it from ``../shared``), and every folder named in
``COMFYUI_DIRS``. A server test runs on each of them, with the build in its id (``test_x[comfyui-v0.8.0]``; select
builds with ``-k``). Each server runs ``main.py --cpu`` on a free loopback port with this pack linked in, separate
input/output/temp folders and the tiny test models (scripts/local_comfyui.py); it is stopped by PID when the
session moves on to the next build, and dies with the test process if that is killed (``die_with_parent``). ``comfy.build`` says which build a test runs on; tests that depend on the
version skip with a reason naming it (``require_version``).
"""

import ast
import shutil
from pathlib import Path

import pytest

from scripts.queue_workflow import ComfyClient, ComfyError, error_message  # noqa: F401 (re-exported for tests)
from scripts.local_comfyui import LocalComfyUI, comfyui_builds

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PACK = Path(__file__).resolve().parent.parent
TEST_NODES = Path(__file__).resolve().parent / "persam_source_nodes"
BUILDS = comfyui_builds()


def pytest_configure(config):
    config.addinivalue_line("markers", "newest_build(why): a server test run on the newest ComfyUI build only, "
                            "since what it checks does not depend on the build (``why`` says so in the skip reason)")


def pytest_collection_modifyitems(items):
    """Tests marked ``newest_build`` are skipped on the other builds before any fixture starts a server."""
    for item in items:
        marker = item.get_closest_marker("newest_build")
        build = item.callspec.params.get("comfy_build") if hasattr(item, "callspec") else None
        if marker and build is not None and build.path != BUILDS[-1].path:
            why = marker.args[0] if marker.args else "the rule does not depend on the build"
            item.add_marker(pytest.mark.skip(reason=f"run on the newest build ({BUILDS[-1].label}) only: {why}"))


@pytest.fixture(scope="session", params=BUILDS, ids=[build.label for build in BUILDS])
def comfy_build(request):
    """One ComfyUI build (``ComfyBuild``: path, label, version) per parametrization."""
    return request.param


@pytest.fixture(scope="session")
def weights_hub():
    """A local stand-in for Hugging Face (tests/stand_in_hub.py) that every session server downloads from
    (``HF_ENDPOINT``): it serves the tiny DICEPTION checkpoint as DICEPTION_v1.pth at 8 MB/s (about 1 s: several
    progress updates), for test_weights_download_node.py. Nothing else on it: any other download is a 404."""
    from stand_in_hub import StandIn

    hub = StandIn()
    hub.add_hub("Canyu/DICEPTION", "DICEPTION_v1.pth", (FIXTURES / "diception/model/diception_tiny.pth").read_bytes())
    hub.rate = 8 << 20
    yield hub
    hub.close()


@pytest.fixture(scope="session")
def comfy(comfy_build, weights_hub, tmp_path_factory):
    """The build's server, started once per session. Beside the pack it loads tests/persam_source_nodes (another
    pack's SAM_MODEL and a LIST of images, for test_persam_reference_nodes.py), so no test needs a server of its own
    for them; it downloads from ``weights_hub``, so the loaders' download test needs none either."""
    workdir = tmp_path_factory.mktemp(comfy_build.label)
    (workdir / "custom_nodes").mkdir()
    (workdir / "custom_nodes" / "persam_source_nodes").symlink_to(TEST_NODES, target_is_directory=True)
    with pytest.MonkeyPatch.context() as env:  # the server inherits them
        env.setenv("HF_ENDPOINT", weights_hub.url)
        env.setenv("HF_TOKEN", "")
        env.setenv("HF_HOME", str(workdir / "hf_home"))
        try:
            engine = LocalComfyUI(workdir, comfy_build)
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


def pack_nodes() -> dict:
    """``{node class name: node module}`` read from the node modules' NODE_CLASS_MAPPINGS literals (no ComfyUI import):
    what the server must list."""
    names = {}
    for path in (PACK / "nodes").glob("*_nodes.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODE_CLASS_MAPPINGS":
                names.update({k.value: path.stem for k in node.value.keys})
    return names
