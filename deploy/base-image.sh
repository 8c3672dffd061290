#!/bin/sh
# Build the base image for every locally built image from Debian's package archive, where
# Docker Hub cannot be reached: debootstrap a minimal bookworm with Python 3.11 (and its venv
# module), PostgreSQL 15, Prometheus and wget, then import it as an image.
#   deploy/base-image.sh [IMAGE] [MIRROR]   (root; debootstrap and a Docker engine needed)
set -eu
image="${1:-forecaster-base:bookworm}"
mirror="${2:-http://deb.debian.org/debian}"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image exists"
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm into $root (a few minutes)"
debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates,postgresql-15,prometheus,wget \
    bookworm "$root" "$mirror" >/dev/null
tar -C "$root" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$image" >/dev/null
echo "$image built"
