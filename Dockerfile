# syntax=docker/dockerfile:1
# Amply API image: `amply serve` against an external PostgreSQL (DATABASE_URL).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/amply
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
RUN /opt/amply/bin/pip install --upgrade pip && /opt/amply/bin/pip install .

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
