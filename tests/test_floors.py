"""The parity and loading tests once more, at the LOWEST dependency versions the pack declares
(requirements-floors.txt = the lower bounds of requirements.txt), in .venv-floors (scripts/setup_floors.sh;
.ci/run creates it). Server tests run only on the newest set."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOORS_PYTHON = ROOT / ".venv-floors" / "bin" / "python"
# What the floors can break: every stage against the official code (diffusers, transformers), SAM (segment-anything),
# the weight files (safetensors, incl. fp8 text encoders; diffusers' single-file loading), the decoders (numpy, scipy,
# pillow). Not rerun: tests of the pack's own logic that these packages do not reach, and the parity criterion's own
# checks against deliberately broken pipelines (they judge the criterion, not the packages).
ENGINE_TESTS = [
    "tests/test_diception_parity.py", "tests/test_persam_parity.py", "tests/test_text_encoder_files.py", "tests/test_decoders.py",
    "tests/test_diception_engine.py::test_pth_and_safetensors_checkpoints_are_the_same_and_convert",
    "tests/test_diception_engine.py::test_a_single_file_sd3_checkpoint_gives_the_same_answers",
    "tests/test_persam_inputs.py::test_both_checkpoint_formats_load_the_same_sam",
]
NOT_AT_THE_FLOORS = "not rejects_a_broken_pipeline and not dropped_point_token"


def floors() -> dict:
    pins = [re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line) for line in (ROOT / "requirements-floors.txt").read_text().splitlines()]
    return {m[1].lower(): m[2] for m in pins if m}


def test_requirements_declare_the_floors():
    for path in ("requirements.txt", "pyproject.toml"):
        text = (ROOT / path).read_text().lower()
        for name, version in floors().items():
            if name != "pytest":
                assert f"{name}>={version}" in text, f"{path} does not declare {name}>={version}"


@pytest.mark.skipif(not FLOORS_PYTHON.exists(), reason="no .venv-floors: run scripts/setup_floors.sh to test the lowest supported versions")
def test_engine_and_parity_tests_pass_at_the_dependency_floors():
    script = "import importlib.metadata as m, sys; print({n: m.version(n) for n in sys.argv[1:]})"
    installed = subprocess.run([FLOORS_PYTHON, "-c", script, *floors()], capture_output=True, text=True, check=True).stdout
    for name, version in floors().items():
        assert f"'{name}': '{version}'" in installed, f".venv-floors has not {name}=={version}: {installed} (re-run scripts/setup_floors.sh)"
    run = subprocess.run(
        [FLOORS_PYTHON, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", NOT_AT_THE_FLOORS, *ENGINE_TESTS],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert run.returncode == 0, f"engine/parity tests failed at the floors {floors()}:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
