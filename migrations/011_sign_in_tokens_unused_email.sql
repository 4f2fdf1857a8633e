-- An address's unused links, which using one of its links voids: without an index that update read the whole
-- table. Partial on `used_at IS NULL`, the update's filter (functions/auth/sign-in-tokens.ts), so used links, most
-- of the rows, are left out. The table holds about a day of links (older ones are deleted as new ones are issued),
-- so building it inside the migration's transaction, which cannot be CONCURRENTLY, holds up sign-ins only briefly.
CREATE INDEX sign_in_tokens_unused_email ON sign_in_tokens (email) WHERE used_at IS NULL;
