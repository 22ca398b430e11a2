#!/usr/bin/env bash
# Build the project's image from the repository's Dockerfile with buildah (no container engine,
# no registry), and a derived image with a third-party plugin, as docs/operations.md describes.
#
#   localhost/python:3.11-slim-bookworm   the base image. Made here once per machine with
#                                         debootstrap (Debian 12's python3 3.11.2, a stand-in for
#                                         the official python image, which is not pulled), unless
#                                         ADMISSION_HOST_BASE_IMAGE names one to use instead
#   localhost/admission-host:dev          ./Dockerfile, built on every run (buildah's layer cache
#                                         keeps the dependencies' layer while requirements.txt holds)
#   localhost/admission-host-env-injector:dev
#                                         FROM the above + plugins/examples/env_injector's wheel
#
# Images live in the machine's container storage (/var/lib/containers, overlay driver), outside
# the repository; the end-to-end suite runs them with podman (runc: crun refuses this machine's
# hybrid cgroups). Needs root; installs what is missing from Debian.
#
#   build.sh            build; print the two image names (project, derived)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/hack/image"
BASE="${ADMISSION_HOST_BASE_IMAGE:-localhost/python:3.11-slim-bookworm}"
IMAGE=localhost/admission-host:dev
DERIVED=localhost/admission-host-env-injector:dev
# Named on every call: podman remembers the driver of its first run and refuses another.
buildah() { command buildah --storage-driver overlay "$@"; }
# Downloads on some machines pass a TLS-inspecting proxy whose CA is only in the machine's bundle.
CA=/etc/ssl/certs/ca-certificates.crt
ca_volume=()
[[ -f $CA ]] && ca_volume=(--volume "$CA:$CA:ro")

missing=()
for tool in buildah debootstrap podman runc; do
    command -v $tool >/dev/null || missing+=($tool)
done
if ((${#missing[@]})); then
    echo "==> apt-get install ${missing[*]}" >&2
    install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2; }
    install || { apt-get update -q >&2 && install; }
fi

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

make_base() {
    local rootfs container mnt started=$SECONDS
    echo "==> making the base image $BASE with debootstrap (Debian 12 python3)" >&2
    rootfs=$(mktemp -d /var/tmp/admission-host-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' RETURN
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >&2
    ln -sf python3 "$rootfs/usr/bin/python"   # the Dockerfile calls `python`, as the official image has
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
    container=$(buildah from scratch)
    mnt=$(buildah mount "$container")
    cp -a "$rootfs"/. "$mnt"/
    buildah umount "$container" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 "$container"
    buildah commit --rm "$container" "$BASE" >/dev/null
    echo "    base image made in $((SECONDS - started)) s" >&2
}

if ! image_exists "$BASE"; then
    [[ -n "${ADMISSION_HOST_BASE_IMAGE:-}" ]] && { echo "!!! no image $BASE in buildah's storage" >&2; exit 1; }
    make_base
fi

started=$SECONDS
buildah bud --isolation chroot --layers --build-arg "PYTHON_IMAGE=$BASE" "${ca_volume[@]}" \
    -t "$IMAGE" "$ROOT" >&2
echo "==> $IMAGE built in $((SECONDS - started)) s" >&2

# The derived image: the plugin as a wheel in a context of its own, installed the documented way.
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
# (built from a copy: setuptools leaves build/ and egg-info behind in the folder it builds)
cp -r "$ROOT/plugins/examples/env_injector" "$context/src"
python3 -m pip wheel --quiet --no-deps --wheel-dir "$context" "$context/src" >&2
rm -rf "$context/src"
cp "$HERE/derived.Dockerfile" "$context/Dockerfile"
buildah bud --isolation chroot --build-arg "BASE=$IMAGE" "${ca_volume[@]}" -t "$DERIVED" "$context" >&2
for name in "$BASE" "$IMAGE" "$DERIVED"; do
    buildah images --format "    {{.Name}}:{{.Tag}} {{.Size}}" "$name" >&2
done
echo "$IMAGE"
echo "$DERIVED"
