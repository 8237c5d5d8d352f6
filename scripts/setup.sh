#!/usr/bin/env bash
# Create (or reuse) .venv with the pack's requirements, the test tools, and the test-engine ComfyUI.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip unpacks multi-GB wheels into TMPDIR: keep it on this clone's filesystem (a small /tmp ran out of space in CI).
export TMPDIR="$PWD/.cache/pip-tmp"
mkdir -p "$TMPDIR"
[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# The torch/torchvision pair that runs ComfyUI on this CPU machine kind (see README, "Tested versions").
.venv/bin/python -c "import torch, torchvision" 2>/dev/null || $PIP install torch==2.14.1 torchvision==0.29.1
$PIP install -r requirements.txt -r requirements-test.txt
.venv/bin/python scripts/get_test_comfyui.py >/dev/null
echo "setup done: .venv ready, test-engine ComfyUI in .cache/comfyui"

# Current ComfyUI (v0.8.0) for a second run of the server tests, when its snapshot is beside the clone (CI):
# unpacked once into .cache/comfyui-v0.8.0; its requirements without torch (and without its frontend pin), then
# the newest comfyui-frontend-package pip can get. Skipped on a fresh clone without ../shared.
SNAPSHOT="${COMFYUI_SNAPSHOT:-../shared/comfyui/comfyui-v0.8.0.tar.gz}"
CURRENT=.cache/comfyui-v0.8.0
if [ -f "$SNAPSHOT" ]; then
  if [ ! -f "$CURRENT/main.py" ]; then
    rm -rf "$CURRENT.partial" && mkdir -p "$CURRENT.partial"
    tar -xzf "$SNAPSHOT" -C "$CURRENT.partial" --strip-components=1
    mv "$CURRENT.partial" "$CURRENT"
  fi
  STAMP=.venv/.comfyui-v0.8.0-requirements
  WANTED="$(sha256sum "$CURRENT/requirements.txt" | cut -d' ' -f1)"
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANTED" ]; then
    grep -v -E '^(torch|torchvision|torchaudio|comfyui-frontend-package)([^a-z0-9_-]|$)' "$CURRENT/requirements.txt" > .cache/comfyui-v0.8.0-requirements.txt
    $PIP install -r .cache/comfyui-v0.8.0-requirements.txt requests
    echo "$WANTED" > "$STAMP"
  fi
  $PIP install --upgrade --upgrade-strategy only-if-needed comfyui-frontend-package
  echo "current ComfyUI in $CURRENT, frontend $(.venv/bin/python -c 'from importlib.metadata import version; print(version("comfyui-frontend-package"))')"
fi
