# One image for every forecaster service (api, trainer, scheduler) and the MLflow server.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app

# The CPU build of torch first, from PyTorch's CPU index: the default PyPI wheel is the
# multi-GB CUDA build, which nothing here uses.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.3,<2.14"

COPY pyproject.toml README.md ./
COPY forecaster ./forecaster
COPY pipelines ./pipelines
COPY service ./service
COPY configs ./configs
RUN pip install ".[auth]" && useradd --create-home --uid 1000 forecaster \
    && mkdir -p /app/data /mlartifacts && chown forecaster /app/data /mlartifacts

USER forecaster
EXPOSE 8000 5000
CMD ["forecaster", "serve", "--host", "0.0.0.0", "--port", "8000"]
