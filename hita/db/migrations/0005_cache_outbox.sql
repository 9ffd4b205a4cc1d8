-- The outbox of cache invalidations: every change to the data the cache shows
-- records, in the same transaction, what it invalidates, and notifies every
-- instance on commit. Triggers feed it, so a change made outside the service
-- (psql, a migration, another program) reaches the cache too.
--
-- user_ids: the users changed (NULL: every user, for large or unknown changes)
-- (an empty array in a trigger means the statement changed no row: nothing is recorded)
-- scope:    'all'     their details and every list and statistic
--           'details' only their details (a login, a permission)
CREATE TABLE cache_outbox (
    id         bigserial PRIMARY KEY,
    user_ids   text[],
    scope      text NOT NULL CHECK (scope IN ('all', 'details')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION hita_cache_outbox_record(ids text[], change_scope text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF ids IS NOT NULL AND cardinality(ids) = 0 THEN
        RETURN;  -- the statement changed no row
    END IF;
    IF cardinality(ids) > 100 THEN
        ids := NULL;  -- a notification holds at most 8000 bytes: say "everyone"
    END IF;
    INSERT INTO cache_outbox (user_ids, scope) VALUES (ids, change_scope);
    PERFORM pg_notify('hita_cache', json_build_object('u', ids, 's', change_scope)::text);
END
$$;

-- users: inserts and deletes change everything shown about them; an update
-- changes only the details when nothing but last_login_at or the password moved.
CREATE FUNCTION hita_users_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hita_cache_outbox_record((SELECT COALESCE(array_agg(id), '{}') FROM new_rows), 'all');
    RETURN NULL;
END
$$;

CREATE FUNCTION hita_users_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hita_cache_outbox_record((SELECT COALESCE(array_agg(id), '{}') FROM old_rows), 'all');
    RETURN NULL;
END
$$;

CREATE FUNCTION hita_users_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
    listed_change boolean;
BEGIN
    SELECT COALESCE(array_agg(n.id), '{}'),
           bool_or((n.id, n.username, n.email, n.full_name, n.role, n.is_active, n.points,
                    n.created_at, n.updated_at)
                   IS DISTINCT FROM
                   (o.id, o.username, o.email, o.full_name, o.role, o.is_active, o.points,
                    o.created_at, o.updated_at))
      INTO ids, listed_change
      FROM new_rows n JOIN old_rows o ON o.id = n.id;
    PERFORM hita_cache_outbox_record(ids, CASE WHEN listed_change THEN 'all' ELSE 'details' END);
    RETURN NULL;
END
$$;

CREATE FUNCTION hita_users_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hita_cache_outbox_record(NULL, 'all');
    RETURN NULL;
END
$$;

CREATE TRIGGER users_outbox_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hita_users_inserted();
CREATE TRIGGER users_outbox_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION hita_users_deleted();
CREATE TRIGGER users_outbox_update AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hita_users_updated();
CREATE TRIGGER users_outbox_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION hita_users_truncated();

-- permissions appear only in a user's details
CREATE FUNCTION hita_permissions_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hita_cache_outbox_record(
        (SELECT COALESCE(array_agg(DISTINCT user_id), '{}') FROM new_rows), 'details');
    RETURN NULL;
END
$$;

CREATE FUNCTION hita_permissions_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hita_cache_outbox_record(
        (SELECT COALESCE(array_agg(DISTINCT user_id), '{}') FROM old_rows), 'details');
    RETURN NULL;
END
$$;

CREATE FUNCTION hita_permissions_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hita_cache_outbox_record(
        (SELECT COALESCE(array_agg(DISTINCT user_id), '{}')
           FROM (SELECT user_id FROM new_rows UNION SELECT user_id FROM old_rows) AS changed),
        'details');
    RETURN NULL;
END
$$;

CREATE FUNCTION hita_permissions_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hita_cache_outbox_record(NULL, 'details');
    RETURN NULL;
END
$$;

CREATE TRIGGER user_permissions_outbox_insert AFTER INSERT ON user_permissions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hita_permissions_inserted();
CREATE TRIGGER user_permissions_outbox_delete AFTER DELETE ON user_permissions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hita_permissions_deleted();
CREATE TRIGGER user_permissions_outbox_update AFTER UPDATE ON user_permissions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hita_permissions_updated();
CREATE TRIGGER user_permissions_outbox_truncate AFTER TRUNCATE ON user_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION hita_permissions_truncated();
