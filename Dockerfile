# proofwell: the API, the dashboard and the workers share this image; the command picks one.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PROOFWELL_MIGRATIONS=/app/migrations

WORKDIR /app
COPY pyproject.toml README.md ./
COPY verifiers ./verifiers
COPY service ./service
COPY migrations ./migrations
RUN pip install . \
    && useradd --create-home --uid 10001 proofwell \
    && mkdir -p /data && chown proofwell /data

USER proofwell
WORKDIR /data
# SQLite by default (a file in the /data volume); set DATABASE_URL for PostgreSQL.
ENV DATABASE_URL=sqlite:////data/proofwell.db
VOLUME ["/data"]
EXPOSE 8000
ENTRYPOINT ["proofwell"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
