# Stitcher service: CPU only, no torch.
# Build context: the repository root (scripts/build_images.sh does this):
#   docker build -f docker/stitcher.Dockerfile -t infinitetalk/stitcher .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY common /src/common
COPY services/stitcher /src/services/stitcher
# Every third-party dependency comes as a binary wheel (PyAV bundles FFmpeg, dlib-bin dlib), or
# as data (face-recognition-models: the face models of the quality report), so no compiler is
# needed; the local itk-common satisfies the service's dependency on it.
RUN /opt/venv/bin/pip install "/src/common[media,quality]" "/src/services/stitcher"

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
EXPOSE 50053
CMD ["itk-stitcher"]
