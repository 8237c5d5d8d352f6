"""A real ComfyUI server for node tests: the session fixture ``comfy`` (a ``ComfyClient``).

The 2024-03 test engine runs ``main.py --cpu`` on a free loopback port with this pack linked into its
``custom_nodes/``, separate input/output/temp folders and the tiny test models (scripts/test_engine.py);
it is stopped by PID at the end of the session.
"""

import shutil
from pathlib import Path

import pytest

from scripts.queue_workflow import ComfyClient, ComfyError, error_message  # noqa: F401 (re-exported for tests)
from scripts.test_engine import TestEngine

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    try:
        engine = TestEngine(tmp_path_factory.mktemp("comfy"))
    except (FileNotFoundError, RuntimeError) as e:
        pytest.fail(str(e))
    yield engine.client
    engine.stop()


def save_fixture_image(comfy: ComfyClient, source: Path, name: str) -> str:
    """Put an image into the server's input folder (as LoadImage expects) and return its name."""
    shutil.copy(source, comfy.dirs["input"] / name)
    return name
