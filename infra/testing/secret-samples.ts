/** Plausible values standing in for the deploy's secrets, for tests that read a deployed environment back. */
export const SECRET_SAMPLES: Readonly<Record<string, string>> = {
  DATABASE_URL: "postgres://app:pw@ep-x.eu-central-1.aws.neon.tech/paper_broker?sslmode=verify-full",
  REDIS_URL: "rediss://default:pw@x.upstash.io:6379",
  UPSTASH_REDIS_REST_URL: "https://x.upstash.io",
  UPSTASH_REDIS_REST_TOKEN: "token",
  JWT_SECRET: "x".repeat(48),
  RESEND_API_KEY: "re_key",
  EMAIL_FROM: "Paper Broker <login@example.com>",
};
