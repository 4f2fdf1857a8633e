-- The session a link signed in (its token's jti), set by the statement that uses the link up. When that statement's
-- answer is lost (a timeout, a dropped connection) after it committed, the sign-in asks for the row by its own
-- session: found, the link was used by this sign-in, which then answers as signed in rather than with a 503 whose
-- retry the used link would refuse (functions/routes/auth.ts). Nullable: links voided, used before this column, or
-- used by functions of the release before it, have none.
ALTER TABLE sign_in_tokens ADD COLUMN session_id text;
