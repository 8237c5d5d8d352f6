"""Start-up cost (issue 19): ComfyUI imports every custom node pack at each start, so the pack must not import
diffusers, transformers, segment_anything (and with them accelerate, huggingface_hub, torchvision) there; a
node imports them when it first runs. Measured with ComfyUI's own loader (``nodes.load_custom_node``) in a fresh
process on the newest ComfyUI build the server tests use (both builds load packs the same way; 10 to 30 s on a
loaded 2-core machine); the timing lives in bench/startup_import.py."""

import sys
from pathlib import Path

import pytest

from scripts.local_comfyui import comfyui_builds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from startup_import import measure  # noqa: E402

BUILDS = [b for b in comfyui_builds() if (b.path / "main.py").is_file()][-1:]


@pytest.mark.parametrize("build", BUILDS, ids=[b.label for b in BUILDS])
def test_loading_the_pack_imports_no_heavy_module(build):
    result = measure(build.path, ROOT, runs=1)
    assert result["heavy"] == [], f"importing the pack at ComfyUI start brings in {result['heavy']}"


def test_the_engine_packages_are_light_until_used():
    """The engine's own packages: importing them (what a host does to describe the tasks) loads no diffusers;
    a name of the heavy part loads it on first use."""
    import subprocess

    code = ("import sys; import models.diception as d; "
            "heavy = {'diffusers', 'transformers'} & {m.split('.')[0] for m in sys.modules}; "
            "assert not heavy, heavy; assert d.TASK_PROMPTS and callable(d.load_pipeline); "
            "assert d.DicePipeline.__name__ == 'DicePipeline' and 'diffusers' in sys.modules; "
            "assert d.TEXT_ENCODERS and d.SD3_MEDIUM_CONFIGS.is_dir(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
