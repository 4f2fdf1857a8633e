-- Magic-link sign-in tokens. Only the SHA-256 of a token is stored, so a database leak reveals no usable link.
-- A token is single-use (used_at) and expires (expires_at, set from the database clock at issue time).
CREATE TABLE sign_in_tokens (
  token_hash bytea PRIMARY KEY,
  email text NOT NULL CHECK (email = lower(email)),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

-- Expired tokens are deleted as new ones are issued.
CREATE INDEX sign_in_tokens_expires ON sign_in_tokens (expires_at);
