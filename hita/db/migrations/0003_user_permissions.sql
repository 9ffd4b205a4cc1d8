-- Fine-grained permissions such as reservations.write; one row per pair.
CREATE TABLE user_permissions (
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    permission text NOT NULL
        CHECK (permission ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' AND length(permission) <= 100),
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, permission)  -- also serves "the permissions of a user"
);
