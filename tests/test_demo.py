"""The README's main job (scripts/demo.py): a fresh clone's first command ends by running it, so it must work with
only the tiny built-in models (the templates name real files that a clone does not have: every one of them must be
mapped to a tiny model, or the run tries to download it)."""

import subprocess
import sys

from scripts.local_comfyui import ROOT


def test_the_main_job_runs_on_the_tiny_built_in_example(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith("diception_depth_") for n in written) and any(n.startswith("persam_mask_") for n in written), written
