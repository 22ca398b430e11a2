#!/usr/bin/env bash
# Build Helm from the Go module pinned in this folder's go.mod/go.sum, once per machine, into a
# cache outside the repository (the chart's tests use it: lint, template, install on the test
# cluster).
#
# Environment:
#   ADMISSION_HOST_CACHE      cache root (default: ~/.cache/admission-host)
#   ADMISSION_HOST_HELM_BIN   where the binary goes (default: $ADMISSION_HOST_CACHE/helm-<pins>)
#
#   build.sh             build unless already there; print the folder
#   build.sh --bin-dir   only print the folder the binary is (or would be) in
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${ADMISSION_HOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/admission-host}"
PINS=$(cd "$HERE" && cat go.mod go.sum tools.go | sha256sum | cut -c1-12)
BIN_DIR="${ADMISSION_HOST_HELM_BIN:-$CACHE_DIR/helm-$PINS}"
HELM_VERSION=$(awk '$1 == "require" && $2 == "helm.sh/helm/v4" {print $3; exit}' "$HERE/go.mod")

if [[ "${1:-}" == --bin-dir ]]; then
    echo "$BIN_DIR"
    exit 0
fi

helm_ok() { "$BIN_DIR/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; }

if helm_ok; then
    echo "helm $HELM_VERSION: reusing $BIN_DIR" >&2
    echo "$BIN_DIR"
    exit 0
fi

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/helm-build.lock"
flock 9
if helm_ok; then
    echo "$BIN_DIR"
    exit 0
fi

command -v go >/dev/null || { echo "!!! Go (1.26 or newer) is needed to build Helm" >&2; exit 1; }
echo "==> building helm $HELM_VERSION with $(go version | cut -d' ' -f3)" >&2
started=$SECONDS
OUT="$CACHE_DIR/helm-build.$$"
rm -rf "$OUT" && mkdir -p "$OUT"
trap 'rm -rf "$OUT"' EXIT
# The version stamp Helm's own Makefile sets; without it `helm version` says only the minor.
(cd "$HERE" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    -o "$OUT/helm" helm.sh/helm/v4/cmd/helm) >&2
echo "    go build took $((SECONDS - started)) s" >&2
rm -rf "$BIN_DIR" && mv "$OUT" "$BIN_DIR"
helm_ok || { echo "!!! the built helm does not run" >&2; exit 1; }
echo "$BIN_DIR"
