-- A points change may carry the client's Idempotency-Key: at most one ledger
-- row per user and key, so a client that retries a change it got no answer
-- for (its instance died after the commit) changes the balance once.
ALTER TABLE points_transactions ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX points_transactions_idempotency_key
    ON points_transactions (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
