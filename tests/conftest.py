"""Shared pytest fixtures, one section per area."""

# --- app area: throwaway PostgreSQL/pgbouncer/Redis/Memcached/RabbitMQ + Celery worker ---
from tests.app_services import app_stack  # noqa: F401  (session fixture)
