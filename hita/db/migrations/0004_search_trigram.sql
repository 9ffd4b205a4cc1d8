-- Substring search on the user list (ILIKE '%term%') can use trigram indexes
-- where the server ships the pg_trgm extension (contrib). The embedded
-- PostgreSQL of pgserver does not; there the search scans the table, which
-- is fine at the sizes a developer's machine holds.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE INDEX users_username_trgm_idx ON users USING gin (username gin_trgm_ops);
        CREATE INDEX users_email_trgm_idx ON users USING gin (email gin_trgm_ops);
        CREATE INDEX users_full_name_trgm_idx ON users USING gin (full_name gin_trgm_ops);
    END IF;
END
$$;
