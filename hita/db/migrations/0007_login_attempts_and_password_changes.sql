-- Failed-login throttling in PostgreSQL: every instance and worker counts in
-- one place, atomically, whether Redis is up or not, and usernames are folded
-- by the same lower() the login lookup uses (users_username_lower_key).
-- name: 'user:' || sha256(lower(username)) or 'addr:' || the client address.
CREATE TABLE login_attempts (
    name        text PRIMARY KEY,
    attempts    integer NOT NULL,
    window_ends timestamptz NOT NULL
);
CREATE INDEX login_attempts_window_ends ON login_attempts (window_ends);

-- A password change ends every token issued before it (tokens carry iat).
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;
UPDATE users SET password_changed_at = created_at;
ALTER TABLE users ALTER COLUMN password_changed_at SET NOT NULL,
                  ALTER COLUMN password_changed_at SET DEFAULT now();
