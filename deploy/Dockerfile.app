# The app: bot/ and actions/ on Python 3.11, installed as `make install` does (editable, so content/,
# config/ and nlu_data/ are found beside the code), started as `make app` starts it.
# Build from the repository root:  docker build -f deploy/Dockerfile.app -t lotse-app .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOTSE_HOST=0.0.0.0 \
    APP_PORT=8000

WORKDIR /srv/lotse
RUN useradd --system --uid 10001 --home-dir /srv/lotse lotse

COPY pyproject.toml README.md ./
COPY bot bot
COPY actions actions
RUN python -m venv .venv \
 && .venv/bin/pip install --no-cache-dir --upgrade pip \
 && .venv/bin/pip install --no-cache-dir -e .

# What the app reads at start-up: the content, and the engine's inputs (for the model fingerprint /health shows).
COPY content content
COPY config config
COPY nlu_data/nlu nlu_data/nlu
COPY nlu_data/dialogue nlu_data/dialogue

USER lotse
EXPOSE 8000

# `make app` is `python -m bot serve`; `make migrate` is `python -m bot db-upgrade` (the compose file
# runs it once before the replicas start).
CMD [".venv/bin/python", "-m", "bot", "serve"]

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD [".venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
