# Local Telemetry console: gunicorn through `python -m console serve`, data in /data.
FROM python:3.11-slim

# Set at build time: docker build --build-arg VERSION=1.2.3 --build-arg SOURCE_URL=https://... .
# LICENSE is an SPDX expression; NOASSERTION (SPDX's "not stated") until the project states one.
ARG VERSION=0.1.0
ARG SOURCE_URL=""
ARG LICENSE=NOASSERTION
LABEL org.opencontainers.image.title="Local Telemetry console" \
      org.opencontainers.image.description="Run telemetry for LLM agents and batch jobs: JSON API, ops console, scheduled retention and backups" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="${LICENSE}"

# postgresql-client: pg_dump / pg_restore for backups of a PostgreSQL database.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TELEMETRY_BASE_DIR=/data \
    TELEMETRY_API_HOST=0.0.0.0 \
    TELEMETRY_API_PORT=8765

WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

COPY console ./console
COPY migrations ./migrations
COPY sdk ./sdk
COPY alembic.ini ./
# The SDK too, so that `telemetry sync` / `telemetry status` work inside the container.
RUN pip install --no-cache-dir -c constraints.txt ./sdk

RUN useradd --system --uid 10001 --home-dir /app telemetry \
 && mkdir -p /data \
 && chown telemetry:telemetry /data
USER telemetry
VOLUME ["/data"]
EXPOSE 8765

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TELEMETRY_API_PORT', '8765'), timeout=4)"]

CMD ["python", "-m", "console", "serve"]
