#!/usr/bin/env bash
# `make image`: build serving_image/Dockerfile as an OCI image without a Docker engine and without Docker Hub.
#
#   1. podman, buildah, debootstrap, runc (Debian packages, installed only when missing) and the containers.conf
#      these machines need (serving_image/podman-env.sh; build/image/containers.conf, named by CONTAINERS_CONF);
#   2. the base localhost/bookworm-py:3.11: Debian bookworm with its python3 (3.11) and python3-venv, made by
#      debootstrap in build/image/rootfs and imported with `podman import` (skipped when the image exists;
#      REBUILD_BASE=1 makes it again);
#   3. the wheels, on the host: every pin of requirements.lock (`pip wheel --no-deps`, from the wheels already in
#      build/image/wheels when they are all there, else from PyPI) and mlkit's own wheel, built from a clean copy of
#      this checkout (its git-tracked and untracked, not ignored, files);
#   4. `buildah bud --isolation chroot` FROM that base, the wheels handed over as the `wheels` build context (it
#      replaces the Dockerfile's `wheels` stage, so the builder stage never runs): pip installs with --no-index,
#      nothing inside the build uses the network, nothing is pulled (--pull=never);
#   5. tags: localhost/mlkit-serving:0.1.0 and ghcr.io/mlkit/mlkit-serving:0.1.0 (what the components name, so
#      kfp.local's DockerRunner finds it locally instead of pulling it).
#
# Everything generated stays under build/image (git-ignored); images live in podman's storage.
# Heavy steps run under `nice -n 10`. Environment: PYTHON (a Python 3.11 with pip, default .venv/bin/python),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), REBUILD_BASE=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
IMAGE_BUILD_DIR=$ROOT/build/image
BASE_IMAGE=localhost/bookworm-py:3.11
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
IMAGE=localhost/mlkit-serving:$VERSION
ALIAS=ghcr.io/mlkit/mlkit-serving:$VERSION
WHEELS=$IMAGE_BUILD_DIR/wheels
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NICE=(nice -n 10)

# shellcheck source=serving_image/podman-env.sh
source "$ROOT/serving_image/podman-env.sh"

started=$SECONDS
step() { echo "image: [$((SECONDS - started))s] $*"; }

# ------------------------------------------------------------------ 1. tools and settings
ensure_container_tools
step "podman $(podman --version | awk '{print $3}'), buildah $(buildah --version | awk '{print $3}'), CONTAINERS_CONF=$CONTAINERS_CONF"

# ------------------------------------------------------------------ 2. the base image
if [ "${REBUILD_BASE:-0}" != 1 ] && podman image exists "$BASE_IMAGE"; then
  step "base $BASE_IMAGE is there (REBUILD_BASE=1 makes it again)"
else
  rootfs=$IMAGE_BUILD_DIR/rootfs
  rm -rf "$rootfs"
  step "debootstrap bookworm (minbase + python3, python3-venv) into build/image/rootfs"
  if ! "${NICE[@]}" debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$DEBIAN_MIRROR" \
      >"$IMAGE_BUILD_DIR/debootstrap.log" 2>&1; then
    tail -n 20 "$IMAGE_BUILD_DIR/debootstrap.log" >&2
    exit 1
  fi
  # Leave out what only the bootstrap needed (apt's caches and lists, its log) and the host's name and resolver:
  # podman provides /etc/hostname and /etc/resolv.conf to every container.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/bootstrap.log
  : >"$rootfs/etc/resolv.conf"
  echo localhost >"$rootfs/etc/hostname"
  step "podman import -> $BASE_IMAGE"
  tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi

# ------------------------------------------------------------------ 3. the wheels, on the host
if ! "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  echo "image: $PYTHON is not Python 3.11 (the wheels must match the image's python3.11); run 'make setup'" >&2
  exit 1
fi
pip=("${NICE[@]}" "$PYTHON" -m pip --disable-pip-version-check)
mkdir -p "$WHEELS"
step "dependency wheels (requirements.lock) -> build/image/wheels"
# All there already: no network (the user's pip configuration is left out, so only build/image/wheels counts).
if ! PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= "${pip[@]}" wheel --quiet --no-deps --no-index --find-links "$WHEELS" \
    -r serving_image/requirements.lock -w "$WHEELS" >/dev/null 2>&1; then
  "${pip[@]}" wheel --quiet --no-deps -r serving_image/requirements.lock -w "$WHEELS"
fi

step "mlkit wheel from a clean copy of the checkout"
tree=$IMAGE_BUILD_DIR/src-tree
rm -rf "$tree" "$WHEELS"/mlkit-*.whl
mkdir -p "$tree"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked and untracked files that git does not ignore (so no .venv, build/, data/), as they are on disk now.
  git ls-files -z --cached --others --exclude-standard \
    | "$PYTHON" -c 'import os, sys; sys.stdout.buffer.write(b"".join(
        p + b"\0" for p in sys.stdin.buffer.read().split(b"\0") if p and os.path.isfile(p)))' \
    | tar --null -T - -c | tar -x -C "$tree"
else
  tar -c --exclude=./.venv --exclude=./build --exclude=./data --exclude=./runs --exclude=./.git . | tar -x -C "$tree"
fi
"${pip[@]}" wheel --quiet --no-deps -w "$WHEELS" "$tree"
rm -rf "$tree"
ls "$WHEELS"/mlkit-"$VERSION"-*.whl >/dev/null
step "$(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)"

# ------------------------------------------------------------------ 4. the image
old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
step "buildah bud --isolation chroot FROM $BASE_IMAGE -> $IMAGE"
"${NICE[@]}" buildah bud --isolation chroot --pull=never \
  --ignorefile serving_image/.dockerignore \
  --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
  --build-context wheels="$WHEELS" \
  -f serving_image/Dockerfile -t "$IMAGE" .
podman tag "$IMAGE" "$ALIAS"
new=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  podman rmi "$old" >/dev/null 2>&1 || true  # the previous build, now untagged (kept if a container uses it)
fi

# ------------------------------------------------------------------ 5. check and report
podman run --rm --network none --entrypoint sh "$IMAGE" -c \
  'echo "image: python3 is $(command -v python3), user $(id -u), $(python3 -c "import mlkit, kfp, kserve; print(\"mlkit\", mlkit.__version__, \"kfp\", kfp.__version__)")"'
step "done"
podman images --filter reference=localhost/mlkit-serving --filter reference=ghcr.io/mlkit/mlkit-serving \
  --filter reference="$BASE_IMAGE"
