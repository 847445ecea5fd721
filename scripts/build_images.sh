#!/usr/bin/env bash
# Builds the service images with docker, named as k8s/base/kustomization.yaml expects them:
#   ${REGISTRY}/infinitetalk/<image>:${IMAGE_TAG}
#
#   make images                                          # infinitetalk/*:0.1.0, local only
#   REGISTRY=registry.example.com IMAGE_TAG=0.2.0 PUSH=1 make images
#   IMAGES="gateway generator-cpu" make images           # a subset
#   WITH_FLASH_ATTN=0 make images                        # generator without flash-attn
#
# Env: REGISTRY (default none), IMAGE_TAG (default 0.1.0, the tag the kustomization pins),
# IMAGES (default: all five), PUSH=1 to push after building, WITH_FLASH_ATTN (default 1),
# PLATFORM (default linux/amd64), DOCKER (default docker).
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY="${REGISTRY:-}"
IMAGE_TAG="${IMAGE_TAG:-0.1.0}"
IMAGES="${IMAGES:-gateway splitter stitcher generator-cpu generator}"
PUSH="${PUSH:-0}"
WITH_FLASH_ATTN="${WITH_FLASH_ATTN:-1}"
PLATFORM="${PLATFORM:-linux/amd64}"
DOCKER="${DOCKER:-docker}"

if ! command -v "$DOCKER" >/dev/null 2>&1; then
  echo "error: '$DOCKER' not found; install Docker (with BuildKit) or set DOCKER=podman" >&2
  exit 1
fi

prefix="${REGISTRY:+${REGISTRY%/}/}infinitetalk"
built=()
for image in $IMAGES; do
  dockerfile="docker/${image}.Dockerfile"
  if [[ ! -f "$dockerfile" ]]; then
    echo "error: no $dockerfile (known: gateway splitter stitcher generator-cpu generator)" >&2
    exit 1
  fi
  ref="${prefix}/${image}:${IMAGE_TAG}"
  args=(--platform "$PLATFORM" -f "$dockerfile" -t "$ref")
  if [[ "$image" == generator ]]; then
    args+=(--build-arg "WITH_FLASH_ATTN=${WITH_FLASH_ATTN}")
  fi
  echo "==> $ref"
  # BuildKit: per-Dockerfile .dockerignore files and only the COPY'd folders are sent.
  DOCKER_BUILDKIT=1 "$DOCKER" build "${args[@]}" .
  if [[ "$PUSH" == 1 ]]; then
    "$DOCKER" push "$ref"
  fi
  built+=("$ref")
done

echo
echo "Built:"
printf '  %s\n' "${built[@]}"
if [[ -n "$REGISTRY" || "$IMAGE_TAG" != 0.1.0 ]]; then
  echo
  echo "Point a kustomization at them (images: section, see docs/kubernetes.md), e.g.:"
  for image in $IMAGES; do
    printf '  - name: infinitetalk/%s\n    newName: %s/%s\n    newTag: "%s"\n' \
      "$image" "$prefix" "$image" "$IMAGE_TAG"
  done
fi
