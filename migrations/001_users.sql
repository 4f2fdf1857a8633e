-- Users: one row per email, created on first magic-link login. Emails are stored lower-cased so lookups and the
-- unique constraint treat "A@x.io" and "a@x.io" as the same person; the check keeps every writer honest.
-- gen_random_uuid() is built into Postgres 13+ (and Neon).
CREATE TABLE users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_email_lower_case CHECK (email = lower(email))
);
