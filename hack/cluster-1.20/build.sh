#!/usr/bin/env bash
# Build kube-apiserver and kube-scheduler of the oldest supported release (Kubernetes v1.20.2) from Debian's
# `kubernetes` source package and install them into a per-machine cache.
#
# etcd is not built: Debian's etcd-server package provides /usr/bin/etcd.
#
# Environment:
#   ADMISSION_HOST_KUBE_BIN     where the binaries go
#                               (default: ~/.cache/admission-host/kube-bin)
#   ADMISSION_HOST_CACHE        cache root for sources, logs and Go caches
#                               (default: ~/.cache/admission-host)
#   ADMISSION_HOST_KEEP_BUILD=1 keep the source/build tree after a successful build
#
#   build.sh             build unless already there; progress on stderr, the folder on stdout
#   build.sh --bin-dir   only print the folder
#
# The script is idempotent: when both binaries are already installed and work,
# it exits immediately without touching apt or the network.
set -euo pipefail

CACHE_DIR="${ADMISSION_HOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/admission-host}"
BIN_DIR="${ADMISSION_HOST_KUBE_BIN:-$CACHE_DIR/kube-bin}"
WORK_DIR="$CACHE_DIR/kube-build"
LOG="$CACHE_DIR/kube-build.log"
BINARIES=(kube-apiserver kube-scheduler)
ETCD=/usr/bin/etcd

if [[ "${1:-}" == --bin-dir ]]; then
    echo "$BIN_DIR"
    exit 0
fi
# Progress goes to stderr; stdout carries only the folder, printed on the way out.
exec 3>&1 1>&2
trap '[[ $? -eq 0 ]] && echo "$BIN_DIR" >&3' EXIT

binaries_ok() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$BIN_DIR/$b" ]] || return 1
        "$BIN_DIR/$b" --version >/dev/null 2>&1 || return 1
    done
}

etcd_ok() {
    [[ -x "$ETCD" ]] || command -v etcd >/dev/null 2>&1
}

if binaries_ok && etcd_ok; then
    echo "control plane binaries: reusing $BIN_DIR"
    exit 0
fi

mkdir -p "$CACHE_DIR" "$BIN_DIR"
# Serialise concurrent runs (e.g. parallel test sessions on one machine).
exec 9>"$CACHE_DIR/build.lock"
flock 9
if binaries_ok && etcd_ok; then
    echo "control plane binaries: reusing $BIN_DIR"
    exit 0
fi

: >"$LOG"
echo "==> build log: $LOG"

# Run a command with its output going to the log; on failure show the tail.
run() {
    echo "+ $*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "!!! failed: $*" >&2
        echo "!!! last 40 lines of $LOG:" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    SUDO=(sudo)
fi

# --- Debian packages --------------------------------------------------------

# Add deb-src entries mirroring the machine's Debian `deb` entries (same
# mirror, suites and components), unless some deb-src entry already exists.
ensure_deb_src() {
    if grep -rqsE '^\s*(deb-src\s|Types:.*deb-src)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
        return 0
    fi
    echo "==> adding deb-src entries for the Debian archive"
    local out
    out=$(python3 - <<'PY'
import glob, os, re

stanzas = []
# deb822 *.sources files
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    text = open(path).read()
    for block in re.split(r"\n\s*\n", text):
        fields = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "debian" not in fields.get("uris", ""):
            continue
        stanza = ["Types: deb-src", "URIs: " + fields["uris"],
                  "Suites: " + fields["suites"],
                  "Components: " + fields.get("components", "main")]
        if "signed-by" in fields:
            stanza.append("Signed-By: " + fields["signed-by"])
        stanzas.append("\n".join(stanza))
# one-line-style sources.list files
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    if not os.path.exists(path):
        continue
    for line in open(path):
        parts = line.split("#", 1)[0].split()
        if len(parts) < 3 or parts[0] != "deb":
            continue
        opts = []
        rest = parts[1:]
        if rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                opts.append(rest.pop(0))
            opts.append(rest.pop(0))
        if len(rest) < 2 or "debian" not in rest[0]:
            continue
        opt = {}
        for o in " ".join(opts).strip("[] ").split():
            if "=" in o:
                k, v = o.split("=", 1)
                opt[k] = v
        stanza = ["Types: deb-src", "URIs: " + rest[0], "Suites: " + rest[1],
                  "Components: " + (" ".join(rest[2:]) or "main")]
        if "signed-by" in opt:
            stanza.append("Signed-By: " + opt["signed-by"])
        stanzas.append("\n".join(stanza))
print("\n\n".join(stanzas))
PY
)
    if [[ -z "$out" ]]; then
        echo "!!! no Debian apt source found to derive a deb-src entry from" >&2
        exit 1
    fi
    printf '%s\n' "$out" | "${SUDO[@]}" tee /etc/apt/sources.list.d/admission-host-src.sources >/dev/null
}

echo "==> installing Debian packages"
ensure_deb_src
run "${SUDO[@]}" apt-get update
run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends \
    golang-go etcd-server rsync openssl make dpkg-dev
if ! etcd_ok; then
    echo "!!! etcd not found after installing etcd-server" >&2
    exit 1
fi
echo "    etcd: $(command -v etcd || echo "$ETCD")"

if binaries_ok; then
    echo "control plane binaries: reusing $BIN_DIR"
    exit 0
fi

# --- Sources ---------------------------------------------------------------

mkdir -p "$WORK_DIR"
cd "$WORK_DIR"
SRC_DIR=$(find "$WORK_DIR" -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
if [[ -z "$SRC_DIR" || ! -f "$SRC_DIR/.admission-host-unpacked" ]]; then
    echo "==> fetching Debian source package 'kubernetes'"
    rm -rf "$WORK_DIR"/kubernetes-* "$WORK_DIR"/kubernetes_*
    run apt-get source kubernetes
    SRC_DIR=$(find "$WORK_DIR" -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
    [[ -n "$SRC_DIR" ]] || { echo "!!! apt-get source produced no kubernetes-* directory" >&2; exit 1; }
    touch "$SRC_DIR/.admission-host-unpacked"
fi
echo "    sources: $SRC_DIR"

# The vendored reflect2 v1.0.1 crashes the API server ("fatal error: fault")
# on the first custom-resource write when built with Go >= 1.18; replace it
# with Debian's reflect2 1.0.2.
if [[ ! -f "$SRC_DIR/.admission-host-reflect2" ]]; then
    echo "==> replacing vendored modern-go/reflect2 with Debian's 1.0.2"
    rm -rf "$WORK_DIR/reflect2" && mkdir -p "$WORK_DIR/reflect2"
    (cd "$WORK_DIR/reflect2" && run apt-get download golang-github-modern-go-reflect2-dev)
    run dpkg-deb -x "$(ls "$WORK_DIR"/reflect2/*.deb | head -n 1)" "$WORK_DIR/reflect2/root"
    new="$WORK_DIR/reflect2/root/usr/share/gocode/src/github.com/modern-go/reflect2"
    old="$SRC_DIR/vendor/github.com/modern-go/reflect2"
    [[ -d "$new" && -d "$old" ]] || { echo "!!! reflect2 directories not found" >&2; exit 1; }
    find "$old" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
    find "$new" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
        -exec cp {} "$old/" \;
    touch "$SRC_DIR/.admission-host-reflect2"
fi

# --- Build -----------------------------------------------------------------

echo "==> building kube-apiserver, kube-scheduler (takes ~6 minutes the first time)"
mkdir -p "$WORK_DIR/home"
started=$SECONDS
# GOPATH mode over vendor/ (module mode does not work for this tree offline).
# The Debian tarball is a `git archive` export with the v1.20.2 version stamped
# into hack/lib/version.sh, so binaries report v1.20.2 without a git tree.
(cd "$SRC_DIR" && run env HOME="$WORK_DIR/home" GOPROXY=off CGO_ENABLED=0 GOFLAGS= \
    make WHAT="cmd/kube-apiserver cmd/kube-scheduler")
echo "    build took $((SECONDS - started)) s"

for b in "${BINARIES[@]}"; do
    install -m 0755 "$SRC_DIR/_output/bin/$b" "$BIN_DIR/$b"
done
binaries_ok || { echo "!!! built binaries do not run" >&2; exit 1; }
echo "==> installed: $("$BIN_DIR/kube-apiserver" --version) -> $BIN_DIR"

if [[ "${ADMISSION_HOST_KEEP_BUILD:-0}" != 1 ]]; then
    echo "==> removing build tree (set ADMISSION_HOST_KEEP_BUILD=1 to keep it)"
    chmod -R u+w "$WORK_DIR" 2>/dev/null || true   # Go's module cache is read-only
    rm -rf "$WORK_DIR"
fi
echo "==> done"
