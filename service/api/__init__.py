"""The HTTP API (FastAPI): one router per resource under /v1."""
