#!/usr/bin/env bash
# `make image-test`: run the image built by `make image` (serving_image/build.sh) for real, with podman:
#   serve     the model server as the image's non-root user, the committed big model mounted at /mnt/models,
#             a port published on 127.0.0.1: /v2/health/ready and a v2 inference on `big`;
#   pipeline  the object-detection pipeline (test profile) with kfp.local's DockerRunner, every task in the
#             image, through podman's Docker-compatible API.
# The logic is in serving_image/image_test.py; this sets up what it needs: podman and its settings
# (serving_image/podman-env.sh) and the docker Python SDK in the project venv (kfp.local's DockerRunner imports it;
# it is not one of mlkit's dependencies). Arguments go to image_test.py (`serve`, `pipeline`; default both).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
IMAGE_BUILD_DIR=$ROOT/build/image
DOCKER_SDK=docker==7.2.0

# shellcheck source=serving_image/podman-env.sh
source "$ROOT/serving_image/podman-env.sh"
ensure_container_tools

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
if ! podman image exists "localhost/mlkit-serving:$VERSION"; then
  echo "image-test: no image localhost/mlkit-serving:$VERSION; run 'make image' first" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import docker, sys; sys.exit(docker.__version__ != sys.argv[1].split("==")[1])' "$DOCKER_SDK" \
    2>/dev/null; then
  echo "image-test: installing $DOCKER_SDK into the venv (for kfp.local's DockerRunner)"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "$DOCKER_SDK"
fi
exec "$PYTHON" "$ROOT/serving_image/image_test.py" --image "localhost/mlkit-serving:$VERSION" "$@"
