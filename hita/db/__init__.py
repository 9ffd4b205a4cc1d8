"""PostgreSQL: the pool, migrations and repositories. Knows nothing of Redis or HTTP."""
