# One image (one tag) for every compose service: seed, worker, fine-tuning job ([train] pulls torch).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY stream_app stream_app
COPY model_export model_export
RUN pip install --no-cache-dir ".[train]"
ENV HF_HUB_OFFLINE=1
ENTRYPOINT []
