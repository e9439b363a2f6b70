# dsrflow: the API, pages and scheduler in one slim, non-root image.
#   docker build -t dsrflow .
#   docker run -p 8000:8000 -e DSRFLOW_DATABASE_URL=postgresql+psycopg://... dsrflow
# The default command serves (and migrates at start-up, under a lock); `dsrflow scheduler`,
# `dsrflow db upgrade` and the other commands run from the same image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DSRFLOW_DATA_DIR=/var/lib/dsrflow \
    DSRFLOW_WORKFLOWS_DIR=/app/workflows
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/dsrflow --create-home dsrflow
COPY --from=build /install /usr/local
COPY workflows /app/workflows
USER 10001:10001
WORKDIR /var/lib/dsrflow
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["dsrflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
