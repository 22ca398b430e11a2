#!/usr/bin/env bash
# One command on a fresh machine: install the project, build (once) or reuse the control plane,
# and run the demo (hack/demo.py) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> installing admission-host (pip install -e .)"
python3 -m pip install --quiet -e .
bash hack/kube-control-plane/build.sh
exec python3 hack/demo.py
