#!/usr/bin/env bash
# Build llmship's container image from the Dockerfile at the repository's root.
#
# With docker when a docker engine answers; else daemonless with buildah (vfs storage,
# chroot isolation: no daemon, no overlay filesystem, no user namespaces needed), from a
# Debian bookworm base with Python 3.11 that this script makes with debootstrap when no
# image registry can be reached. See docs/image.md.
#
# Usage: scripts/build-image.sh [EXTRA BUILD OPTIONS...]
#
# Environment:
#   IMAGE            the image's name (default: llmship:VERSION, VERSION from pyproject.toml)
#   BUILDER          docker or buildah (default: docker when `docker info` answers, else buildah)
#   PYTHON_IMAGE     the base image; with buildah, one missing from its storage is made with
#                    debootstrap (default: python:3.11-slim-bookworm with docker,
#                    localhost/python:3.11-slim-bookworm with buildah)
#   CMAKE_ARGS       llama.cpp's CMake options, e.g. "-DGGML_CUDA=on" (with a CUDA base image)
#   IMAGE_BUILD_DIR  buildah's storage and the debootstrap root (default: /tmp/imagebuild)
#   DEBIAN_MIRROR    where debootstrap fetches packages (default: http://deb.debian.org/debian)
set -euo pipefail

cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
IMAGE=${IMAGE:-llmship:${VERSION}}
BUILD_DIR=${IMAGE_BUILD_DIR:-/tmp/imagebuild}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() {
    echo "build-image: $*" >&2
    exit 1
}

if [[ -z ${BUILDER:-} ]]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        BUILDER=docker
    else
        BUILDER=buildah
    fi
fi

build_args=()
[[ -n ${CMAKE_ARGS:-} ]] && build_args+=(--build-arg "CMAKE_ARGS=${CMAKE_ARGS}")

# buildah's own storage under BUILD_DIR: the vfs driver works on any filesystem.
STORAGE=(--storage-driver vfs --root "${BUILD_DIR}/storage" --runroot "${BUILD_DIR}/runroot")

make_base() {
    # A Debian bookworm root with Python 3.11 and venv, trimmed like the official slim
    # image, imported as the image $1. It trusts the CA certificates this host trusts, so
    # pip works behind the same TLS-inspecting proxy as the host, if any.
    local name=$1 rootfs=${BUILD_DIR}/rootfs container
    [[ $(id -u) == 0 ]] || die "debootstrap needs root to make the base image ${name}"
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing: apt-get install debootstrap"
    echo "build-image: making the base image ${name} with debootstrap (about a minute)"
    rm -rf "${rootfs}"
    debootstrap --variant=minbase \
        --include=python3.11,python3.11-venv,python3-venv,ca-certificates \
        bookworm "${rootfs}" "${MIRROR}"
    rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* \
        "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/*
    find "${rootfs}/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    cat >"${rootfs}/etc/apt/sources.list" <<EOF
deb ${MIRROR} bookworm main
deb ${MIRROR} bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
    cp /etc/ssl/certs/ca-certificates.crt "${rootfs}/etc/ssl/certs/ca-certificates.crt"
    container=$(buildah "${STORAGE[@]}" from scratch)
    buildah "${STORAGE[@]}" copy "${container}" "${rootfs}" / >/dev/null
    buildah "${STORAGE[@]}" config --env LANG=C.UTF-8 --cmd python3 "${container}"
    buildah "${STORAGE[@]}" commit --rm "${container}" "${name}" >/dev/null
    rm -rf "${rootfs}"
}

start=$(date +%s)
case ${BUILDER} in
docker)
    [[ -n ${PYTHON_IMAGE:-} ]] && build_args+=(--build-arg "PYTHON_IMAGE=${PYTHON_IMAGE}")
    docker build "${build_args[@]}" --tag "${IMAGE}" "$@" .
    size="$(docker image inspect --format '{{.Size}}' "${IMAGE}") bytes"
    run="docker run"
    ;;
buildah)
    command -v buildah >/dev/null 2>&1 ||
        die "no docker engine answers and buildah is missing: apt-get install buildah podman debootstrap"
    base=${PYTHON_IMAGE:-localhost/python:3.11-slim-bookworm}
    mkdir -p "${BUILD_DIR}"
    buildah "${STORAGE[@]}" inspect --type image "${base}" >/dev/null 2>&1 || make_base "${base}"
    buildah "${STORAGE[@]}" build --isolation chroot --layers --format docker \
        --build-arg "PYTHON_IMAGE=${base}" "${build_args[@]}" --tag "${IMAGE}" "$@" .
    size=$(buildah "${STORAGE[@]}" images --format '{{.Size}}' "${IMAGE}")
    run="podman ${STORAGE[*]} run"
    ;;
*)
    die "BUILDER must be docker or buildah, not ${BUILDER}"
    ;;
esac

echo "build-image: built ${IMAGE} with ${BUILDER} in $(($(date +%s) - start)) s: ${size}"
echo "build-image: run it with: ${run} --rm -p 8000:8000 ${IMAGE}"
