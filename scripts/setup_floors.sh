#!/usr/bin/env bash
# Create (or reuse) .venv-floors: the LOWEST dependency versions the pack supports (requirements-floors.txt), to run
# the engine and parity tests a second time (tests/test_floors.py). The torch/torchvision stack is not reinstalled:
# it is linked from .venv (scripts/setup.sh first), so only the floors are installed (about 0.5 GB, 1-2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
# pip unpacks multi-GB wheels into TMPDIR: keep it on this clone's filesystem (a small /tmp ran out of space in CI).
export TMPDIR="$PWD/.cache/pip-tmp"
mkdir -p "$TMPDIR"
[ -x .venv/bin/python ] || { echo "setup_floors: .venv missing, run scripts/setup.sh first" >&2; exit 1; }
[ -x .venv-floors/bin/python ] || python3 -m venv .venv-floors
site() { "$1" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"; }
SITE=$(site .venv/bin/python)
mkdir -p .venv-floors/torch-stack
for entry in "$SITE"/*; do
  case "$(basename "$entry")" in
    torch | torch-*.dist-info | torchgen | functorch | torchvision | torchvision-*.dist-info | torchvision.libs | \
    sympy | sympy-* | mpmath | mpmath-* | networkx | networkx-* | jinja2 | jinja2-* | markupsafe | markupsafe-* | MarkupSafe-* | \
    fsspec | fsspec-* | filelock | filelock-* | typing_extensions.py | typing_extensions-* | nvidia | nvidia_* | cuda | cuda_* | triton | triton-*)
      ln -sfn "$entry" .venv-floors/torch-stack/ ;;
  esac
done
echo "$PWD/.venv-floors/torch-stack" > "$(site .venv-floors/bin/python)/zz_torch_stack.pth"
.venv-floors/bin/python -m pip --disable-pip-version-check -q install -r requirements-floors.txt
.venv-floors/bin/python -c "import torch, torchvision, transformers, diffusers; print('floors venv ready: torch', torch.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__)"
