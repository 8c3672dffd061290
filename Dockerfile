# One image for every forecaster service (api, trainer, scheduler, tuner) and the MLflow server.
#
# Build arguments, for networks without Docker Hub or the PyTorch index (README, Deployments):
#   BASE_IMAGE       an image with python3 (3.11+) and its venv module: Debian's python3 works
#                    (deploy/base-image.sh builds one from Debian's archive with debootstrap)
#   TORCH_INDEX_URL  where pip finds the CPU build of torch; a torch wheel in deploy/wheels/
#                    wins over it (its own dependencies still come from the package index)
# and deploy/certs/*.crt, a CA bundle pip trusts while it installs (a TLS-intercepting proxy).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app

# The CPU build of torch first: the default PyPI wheel is the multi-GB CUDA build, which
# nothing here uses.
COPY deploy/certs/ /tmp/certs/
COPY deploy/wheels/ /tmp/wheels/
RUN python3 -m venv /opt/venv \
    && for c in /tmp/certs/*.crt; do [ -f "$c" ] && export PIP_CERT="$c"; done; \
    if ls /tmp/wheels/torch-*.whl >/dev/null 2>&1; then \
        pip install /tmp/wheels/torch-*.whl; \
    else \
        pip install --index-url "$TORCH_INDEX_URL" "torch>=2.3,<2.14"; \
    fi \
    && rm -rf /tmp/wheels

COPY pyproject.toml README.md ./
COPY forecaster ./forecaster
COPY pipelines ./pipelines
COPY service ./service
COPY configs ./configs
RUN for c in /tmp/certs/*.crt; do [ -f "$c" ] && export PIP_CERT="$c"; done; \
    pip install ".[auth]" \
    && rm -rf /tmp/certs \
    && useradd --create-home --uid 1000 forecaster \
    && mkdir -p /app/data /mlartifacts && chown forecaster /app/data /mlartifacts

USER forecaster
EXPOSE 8000 5000
CMD ["forecaster", "serve", "--host", "0.0.0.0", "--port", "8000"]
