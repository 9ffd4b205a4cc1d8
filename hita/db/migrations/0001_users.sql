-- Hotel users. Ids are random 10-digit strings; usernames and emails are
-- unique whatever their case (the unique indexes are on lower()).
CREATE TABLE users (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9]{10}$'),
    username      text NOT NULL CHECK (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    full_name     text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 100),
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'superadmin')),
    is_active     boolean NOT NULL DEFAULT true,
    points        bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

-- login by username, and the duplicate checks
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
-- list pages (newest first), sign-ups per day, new users in the last 7 days
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
-- list pages filtered by role or by state
CREATE INDEX users_role_created_at_id_idx ON users (role, created_at, id);
CREATE INDEX users_is_active_created_at_id_idx ON users (is_active, created_at, id);
-- top users by points on the dashboard
CREATE INDEX users_points_id_idx ON users (points DESC, id);
