# syntax=docker/dockerfile:1
# Generator with the InfiniteTalk backend: PyTorch with CUDA, optional flash-attn. Also carries
# `itk-download-weights`, which the model-weights Job runs. Build context: the repository root:
#   docker build -f docker/generator.Dockerfile -t infinitetalk/generator .
#   docker build -f docker/generator.Dockerfile --build-arg WITH_FLASH_ATTN=0 ...   # PyTorch SDPA only
#
# Both stages start from the same PyTorch release, so the flash-attn wheel built (or fetched)
# against the devel image's torch matches the runtime image's torch exactly.
ARG PYTORCH_VERSION=2.7.1-cuda12.8-cudnn9

# flash-attn needs nvcc when no prebuilt wheel matches this torch/CUDA/Python: the devel image
# has it, and none of it reaches the final image.
FROM pytorch/pytorch:${PYTORCH_VERSION}-devel AS flash-attn
ARG WITH_FLASH_ATTN=1
ARG FLASH_ATTN_VERSION=2.8.3
# Compiling uses about 4 GB of memory per job.
ARG MAX_JOBS=4
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 MAX_JOBS=${MAX_JOBS}
RUN mkdir /wheels \
 && if [ "${WITH_FLASH_ATTN}" = "1" ]; then \
      pip install ninja packaging psutil wheel \
      && pip wheel --no-build-isolation --no-deps --wheel-dir /wheels "flash-attn==${FLASH_ATTN_VERSION}"; \
    fi

FROM pytorch/pytorch:${PYTORCH_VERSION}-runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY common /src/common
COPY services/generator /src/services/generator
# The constraint keeps the image's CUDA build of torch: the [infinitetalk] extra leaves torch
# unpinned and must not pull another one from PyPI. A resolver conflict here means a dependency
# wants a newer torch: raise PYTORCH_VERSION. The packages need Python 3.11 or newer.
# The flash-attn wheel (~250 MB) is bind-mounted from its stage, so no layer keeps a copy.
RUN --mount=type=bind,from=flash-attn,source=/wheels,target=/wheels \
    python -c "import sys; assert sys.version_info >= (3, 11), 'Python 3.11+ needed, image has ' + sys.version" \
 && python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/keep-torch.txt \
 && pip install --constraint /tmp/keep-torch.txt \
      "/src/common[media,faces]" "/src/services/generator[infinitetalk,fp8]" $(find /wheels -name "*.whl") \
 && rm -rf /src /tmp/keep-torch.txt
# A fixed non-root uid, the runAsUser of k8s/.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIND_HOST=0.0.0.0 \
    GENERATOR_BACKEND=infinitetalk \
    MODEL_DIR=/models
USER 10001:10001
WORKDIR /home/app
EXPOSE 50052
CMD ["itk-generator"]
