#!/usr/bin/env bash
# Create (or reuse) .venv with the pack's requirements, the test tools, and the test-engine ComfyUI.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# The torch/torchvision pair that runs ComfyUI on this CPU machine kind (see README, "Tested versions").
.venv/bin/python -c "import torch, torchvision" 2>/dev/null || $PIP install torch==2.14.1 torchvision==0.29.1
$PIP install -r requirements.txt -r requirements-test.txt
.venv/bin/python scripts/get_test_comfyui.py >/dev/null
echo "setup done: .venv ready, test-engine ComfyUI in .cache/comfyui"
