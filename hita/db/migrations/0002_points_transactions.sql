-- The loyalty points ledger: a positive amount is an add, a negative one a
-- redeem; balance_after is the user's balance right after the row.
CREATE TABLE points_transactions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount        bigint NOT NULL CHECK (amount <> 0),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    balance_after bigint NOT NULL CHECK (balance_after >= 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- a user's history, newest first
CREATE INDEX points_transactions_user_created_idx
    ON points_transactions (user_id, created_at DESC, id DESC);
-- points issued and redeemed in the last 30 days (index-only scan)
CREATE INDEX points_transactions_created_at_idx
    ON points_transactions (created_at) INCLUDE (amount);
