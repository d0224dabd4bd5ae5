"""Shared machinery every domain uses: database sessions, errors, pagination, idempotency,
rate limits, settings, observability."""
