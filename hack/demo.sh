#!/usr/bin/env bash
# One command on a fresh machine: install the project, build (once) or reuse the test cluster,
# and run the demo (hack/demo.py) until Ctrl-C; `--once` runs every step, prints what happened,
# stops it all and exits. ADMISSION_HOST_KUBE_VERSION=1.20 runs it on the oldest supported
# Kubernetes instead of the current one.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> installing admission-host (pip install -e .)"
python3 -m pip install --quiet -e .
python3 -c 'from tests.e2e import cluster; cluster.ensure_binaries()'
exec python3 hack/demo.py "$@"
