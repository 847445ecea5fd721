# Gateway: public gRPC API and REST bridge. CPU only, no torch.
# Build context: the repository root (scripts/build_images.sh does this):
#   docker build -f docker/gateway.Dockerfile -t infinitetalk/gateway .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY common /src/common
COPY gateway /src/gateway
# Every third-party dependency comes as a binary wheel (PyAV bundles FFmpeg), so no compiler is
# needed; the local itk-common (with its media extra: the gateway checks and cuts source videos
# for dubbing; with its faces extra: a two-person portrait's faces become the speakers' boxes) satisfies the dependency on it. The gateway depends on PyAV itself for the live HLS
# segments it muxes; the web page's static files come inside the package.
RUN /opt/venv/bin/pip install "/src/common[media,faces]" /src/gateway

# Only the virtual environment moves on: no sources, pip caches or build files in the image.
FROM ${PYTHON_IMAGE}
# A fixed non-root uid, the runAsUser of k8s/.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIND_HOST=0.0.0.0
USER 10001:10001
WORKDIR /home/app
EXPOSE 8080 50050
CMD ["itk-gateway"]
