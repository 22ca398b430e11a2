#!/usr/bin/env bash
# Build the current-Kubernetes test cluster from the published Go modules pinned in this
# folder's go.mod/go.sum, once per machine, into a cache outside the repository:
#
#   kube-apiserver, kube-scheduler, kube-controller-manager, kubectl  (k8s.io/kubernetes)
#   etcd                                   (go.etcd.io/etcd/server/v3, wrapped by cmd/etcd)
#   kwok                                   (sigs.k8s.io/kwok: simulated nodes and kubelet)
#   kwok-karpenter                         (sigs.k8s.io/karpenter's kwok provider: an autoscaler,
#                                           with its CRDs in karpenter-crds/)
#
# The cluster-autoscaler (k8s.io/autoscaler/cluster-autoscaler) is not here: the module proxy
# these machines reach refuses that module (403 for its version list, @latest and every version
# asked), so Karpenter, which the proxy serves, is the autoscaler of the test cluster.
#
# All of them are built by one `go build`, so packages they share compile once.
#
# Environment:
#   ADMISSION_HOST_CACHE      cache root (default: ~/.cache/admission-host)
#   ADMISSION_HOST_KUBE_BIN   where the binaries go (default: $ADMISSION_HOST_CACHE/cluster-<pins>,
#                             named after a hash of go.mod, go.sum and cmd/, so a change of pins
#                             builds anew and an unchanged tree never rebuilds)
#
#   build.sh             build unless already there; print the folder
#   build.sh --bin-dir   only print the folder the binaries are (or would be) in
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${ADMISSION_HOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/admission-host}"
PINS=$(cd "$HERE" && cat go.mod go.sum $(find cmd -type f | sort) | sha256sum | cut -c1-12)
BIN_DIR="${ADMISSION_HOST_KUBE_BIN:-$CACHE_DIR/cluster-$PINS}"
KUBE_VERSION=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$HERE/go.mod")
BINARIES=(kube-apiserver kube-scheduler kube-controller-manager kubectl etcd kwok kwok-karpenter)

if [[ "${1:-}" == --bin-dir ]]; then
    echo "$BIN_DIR"
    exit 0
fi

binaries_ok() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$BIN_DIR/$b" ]] || return 1
    done
    [[ -f "$BIN_DIR/karpenter-crds/karpenter.sh_nodepools.yaml" ]] || return 1
    "$BIN_DIR/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION"
}

if binaries_ok; then
    echo "test cluster $KUBE_VERSION: reusing $BIN_DIR" >&2
    echo "$BIN_DIR"
    exit 0
fi

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/build.lock"   # concurrent runs on one machine build once
flock 9
if binaries_ok; then
    echo "$BIN_DIR"
    exit 0
fi

command -v go >/dev/null || { echo "!!! Go (1.26 or newer) is needed to build the test cluster" >&2; exit 1; }
echo "==> building the test cluster $KUBE_VERSION with $(go version | cut -d' ' -f3) (about 20 minutes the first time on 2 cores)" >&2

# The version stamps that Kubernetes' own build sets; without them the binaries say v0.0.0.
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

OUT="$CACHE_DIR/cluster-build.$$"
rm -rf "$OUT" && mkdir -p "$OUT"
trap 'rm -rf "$OUT"' EXIT
started=$SECONDS
build() { (cd "$HERE" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w$stamp" "$@") >&2; }
build -o "$OUT/" ./cmd/etcd k8s.io/kubernetes/cmd/{kube-apiserver,kube-scheduler,kube-controller-manager,kubectl} \
    sigs.k8s.io/kwok/cmd/kwok
# karpenter's main is also called kwok: a second build (sharing the compiled packages) names it.
build -o "$OUT/kwok-karpenter" sigs.k8s.io/karpenter/kwok
karpenter=$(cd "$HERE" && go list -m -f '{{.Dir}}' sigs.k8s.io/karpenter)
mkdir -p "$OUT/karpenter-crds"
cp "$karpenter"/kwok/charts/crds/*.yaml "$karpenter"/kwok/apis/crds/*.yaml "$OUT/karpenter-crds/"
chmod -R u+w "$OUT/karpenter-crds"   # the module cache is read-only
echo "    go build took $((SECONDS - started)) s" >&2
rm -rf "$BIN_DIR.new" && mv "$OUT" "$BIN_DIR.new"
rm -rf "$BIN_DIR" && mv "$BIN_DIR.new" "$BIN_DIR"
binaries_ok || { echo "!!! the built binaries do not run" >&2; exit 1; }
echo "==> installed $(du -sh "$BIN_DIR" | cut -f1) in $BIN_DIR" >&2
echo "$BIN_DIR"
