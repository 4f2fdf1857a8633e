// What the deploying shell decides (infra/deploy-settings.ts): the API's and the stream's domains and what follows
// from them (the gateway's and the load balancer's args, APP_URL, STREAM_URL, the stream's allowed origins), the
// API's settings passed on to the functions, and the warnings about browser frontends that could not use their
// session. Each resulting environment is read back with the processes' own configuration readers.
import { readFileSync } from "node:fs";
import { parseEnv } from "node:util";
import { describe, expect, it } from "vitest";
import { readApiConfig } from "../functions/config.ts";
import { ConfigError } from "../platform/config.ts";
import { logLevel } from "../platform/log.ts";
import { readMetricsConfig } from "../platform/metrics.ts";
import { readPollerConfig } from "../poller/config.ts";
import { readStreamConfig } from "../stream/config.ts";
import { HEADERS_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS, TICKET_CHECK_TIMEOUT_MS } from "../stream/server.ts";
import {
  appUrlFor,
  CONTAINER_SETTINGS_NOT_PASSED,
  ENGINE_TIMEOUT_MAX_MS,
  FUNCTION_SETTINGS,
  FUNCTION_SETTINGS_NOT_PASSED,
  functionPlainEnv,
  readDeploySettings,
  STREAM_SETTINGS,
  streamPlainEnv,
  type DeploySettings,
} from "./deploy-settings.ts";
import {
  apiGatewayArgs,
  CONTAINER_PLANS,
  CONTAINERS,
  FUNCTION_SECRET_ENV,
  STREAM_DEREGISTRATION_DELAY_SECONDS,
  STREAM_IDLE_TIMEOUT_SECONDS,
  streamLoadBalancer,
  streamServiceArgs,
  streamUrlFrom,
} from "./plan.ts";
import { DEFAULT_BACKOFF } from "../client/transport.ts";
import { SECRET_SAMPLES } from "./testing/secret-samples.ts";

const GATEWAY_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com";
const LOAD_BALANCER_URL = "http://stream-lb-1.eu-west-1.elb.amazonaws.com";

const SECRETS = SECRET_SAMPLES;

/** What a stage deployed with `deploy` runs with: the API's and the stream's configuration as they read it. */
function deployed(deploy: DeploySettings) {
  // As sst.config.ts wires them: SST's Service.url is https://<domain>/ with a domain (SST 3.19, Service.url).
  const appUrl = appUrlFor(deploy.apiDomain, GATEWAY_URL);
  const serviceUrl = deploy.streamDomain === undefined ? LOAD_BALANCER_URL : `https://${deploy.streamDomain}/`;
  const functionEnv = functionPlainEnv(deploy, { appUrl, streamUrl: streamUrlFrom(serviceUrl) });
  return {
    functionEnv,
    api: readApiConfig({ ...SECRETS, ...functionEnv }),
    stream: readStreamConfig({ ...SECRETS, ...streamPlainEnv(deploy, appUrl) }),
  };
}

describe("the API's domain (API_DOMAIN)", () => {
  it("is API Gateway's custom domain and the API's URL: sign-in links, the cookie's host, the stream's origin", () => {
    const deploy = readDeploySettings({
      API_DOMAIN: "api.example.com",
      STREAM_DOMAIN: "stream.example.com",
      CORS_ORIGINS: "https://app.example.com",
    });
    expect(apiGatewayArgs(deploy.apiDomain)).toEqual({ cors: false, domain: "api.example.com" });
    const { api, stream } = deployed(deploy);
    expect(api.settings.appUrl).toBe("https://api.example.com");
    expect(api.settings.secureCookies).toBe(true);
    expect(api.settings.corsOrigins).toEqual(["https://app.example.com"]);
    expect(api.settings.streamUrl).toBe("wss://stream.example.com/api/v1/stream");
    expect([...stream.allowedOrigins]).toEqual(["https://api.example.com", "https://app.example.com"]);
    // A frontend on the API's site, with the stream on wss://: nothing to warn about.
    expect(deploy.warnings).toEqual([]);
  });

  it("unset, leaves the API on API Gateway's own host and URL", () => {
    for (const env of [{}, { API_DOMAIN: "" }, { API_DOMAIN: "  " }]) {
      const deploy = readDeploySettings(env);
      expect(deploy.apiDomain).toBeUndefined();
      expect(apiGatewayArgs(deploy.apiDomain)).toEqual({ cors: false });
      expect(deployed(deploy).api.settings.appUrl).toBe(GATEWAY_URL);
      expect(deployed(deploy).api.settings.streamUrl).toBe(streamUrlFrom(LOAD_BALANCER_URL));
    }
  });

  it("refuses what is not a host name: a URL, a port, a path, capitals", () => {
    for (const bad of ["https://api.example.com", "api.example.com:443", "api.example.com/v1", "API.example.com"])
      expect(() => readDeploySettings({ API_DOMAIN: bad }), bad).toThrow(
        new ConfigError(
          `API_DOMAIN must be a host name like api.example.com (lower case; no scheme, port or path), got "${bad}"`,
        ),
      );
    expect(readDeploySettings({ API_DOMAIN: " api.example.com " }).apiDomain).toBe("api.example.com");
  });
});

describe("the sender of sign-in emails (the EmailFrom secret)", () => {
  it("must be set, and not to Resend's testing sender, which reaches only the Resend account's own address", () => {
    const { functionEnv, api } = deployed(readDeploySettings({}));
    expect(api.emailFrom).toBe(SECRETS.EMAIL_FROM);
    const unset = Object.fromEntries(Object.entries(SECRETS).filter(([name]) => name !== "EMAIL_FROM"));
    expect(() => readApiConfig({ ...unset, ...functionEnv })).toThrow(/^EMAIL_FROM: .*\(the default\)/);
    const testing = { ...SECRETS, ...functionEnv, EMAIL_FROM: "Paper Broker <onboarding@resend.dev>" };
    expect(() => readApiConfig(testing)).toThrow(/^EMAIL_FROM: expected a sender on a domain verified in Resend/);
  });
});

describe("the stream's domain (STREAM_DOMAIN)", () => {
  it("gives the stream's load balancer wss:// on 443, handed out with each ticket", () => {
    const deploy = readDeploySettings({ STREAM_DOMAIN: "stream.example.com" });
    expect(streamLoadBalancer(deploy.streamDomain)).toMatchObject({
      domain: "stream.example.com",
      rules: [
        { listen: "443/https", forward: "3001/http" },
        { listen: "80/http", redirect: "443/https" },
      ],
    });
    expect(deployed(deploy).api.settings.streamUrl).toBe("wss://stream.example.com/api/v1/stream");
    expect(() => readDeploySettings({ STREAM_DOMAIN: "wss://stream.example.com" })).toThrow(
      /STREAM_DOMAIN must be a host name like stream\.example\.com/,
    );
  });

  it("idles connections out at the load balancer before the stream server does", () => {
    expect(streamLoadBalancer(undefined).idleTimeoutSeconds).toBe(STREAM_IDLE_TIMEOUT_SECONDS);
    expect(streamLoadBalancer("stream.example.com").idleTimeoutSeconds).toBe(STREAM_IDLE_TIMEOUT_SECONDS);
    // Above the stream's heartbeat, so an open socket is never idle that long.
    expect(STREAM_IDLE_TIMEOUT_SECONDS * 1000).toBeGreaterThan(readStreamConfig(SECRETS).limits.heartbeatMs);
    expect(KEEP_ALIVE_TIMEOUT_MS).toBeGreaterThan(STREAM_IDLE_TIMEOUT_SECONDS * 1000);
    expect(HEADERS_TIMEOUT_MS).toBeGreaterThan(KEEP_ALIVE_TIMEOUT_MS);
  });

  it("drains a stopped stream task briefly: an upgrade in progress is answered, a deploy not held for 300 s", () => {
    for (const domain of [undefined, "stream.example.com"]) {
      const { loadBalancer, transform } = streamServiceArgs(domain);
      const lb = streamLoadBalancer(domain);
      expect(loadBalancer).toEqual({
        ...("domain" in lb ? { domain: lb.domain } : {}),
        rules: lb.rules,
        health: lb.health,
      });
      // SST sets neither: without these, AWS's defaults (60 s idle, 300 s deregistration delay).
      expect(transform).toEqual({
        loadBalancer: { idleTimeout: STREAM_IDLE_TIMEOUT_SECONDS },
        target: { deregistrationDelay: STREAM_DEREGISTRATION_DELAY_SECONDS },
      });
    }
    expect(STREAM_DEREGISTRATION_DELAY_SECONDS * 1000).toBeGreaterThan(TICKET_CHECK_TIMEOUT_MS);
    // Every socket cut at the end of a drain was opened before it began: stable, so its client spreads its retry.
    expect(STREAM_DEREGISTRATION_DELAY_SECONDS * 1000).toBeGreaterThanOrEqual(DEFAULT_BACKOFF.stableMs);
    // A WebSocket never drains of itself: the delay is waited out whole on every stop, then the sockets are cut.
    expect(STREAM_DEREGISTRATION_DELAY_SECONDS).toBeLessThanOrEqual(15);
  });
});

describe("the API's settings, from the deploying shell", () => {
  const values: Readonly<Record<(typeof FUNCTION_SETTINGS)[number], string>> = {
    CORS_ORIGINS: "https://app.example.com",
    APP_REDIRECT_URL: "https://app.example.com/signed-in",
    ENGINE_TIMEOUT_MS: "8000",
    TRADE_RATE_LIMIT_PER_SEC: "50",
    SIGN_IN_LIMIT_PER_IP: "40",
    SIGN_IN_EMAILS_PER_DAY: "5000",
    VERIFY_LIMIT_PER_IP: "45",
    HISTORY_RATE_LIMIT_PER_SEC: "15",
    CANDLES_RATE_LIMIT_PER_SEC: "25",
    STREAM_TICKET_LIMIT_PER_MIN: "90",
    UPSTASH_POLL_MIN_MS: "3",
    UPSTASH_POLL_MAX_MS: "30",
  };

  it("reach the functions when set, and take effect there", () => {
    const deploy = readDeploySettings({ ...values, API_DOMAIN: "api.example.com" });
    expect(deploy.functionEnv).toEqual(values);
    const { api } = deployed(deploy);
    expect(api.settings.corsOrigins).toEqual(["https://app.example.com"]);
    expect(api.settings.appRedirectUrl).toBe("https://app.example.com/signed-in");
    expect(api.engineTimeoutMs).toBe(8000);
    expect(api.settings.tradeRate.limit).toBe(50);
    expect(api.settings.signInPerIp.limit).toBe(40);
    expect(api.settings.signInPerDeployment).toEqual({ limit: 5000, windowMs: 24 * 3_600_000 });
    expect(api.settings.verifyPerIp.limit).toBe(45);
    expect(api.settings.historyRate.limit).toBe(15);
    expect(api.settings.candlesRate.limit).toBe(25);
    expect(api.settings.streamTicketRate.limit).toBe(90);
    expect(api.redis).toMatchObject({ kind: "upstash", pollMinMs: 3, pollMaxMs: 30 });
  });

  it("reach them only when set, so the defaults stay in functions/config.ts", () => {
    const unset = readDeploySettings({ ENGINE_TIMEOUT_MS: "", TRADE_RATE_LIMIT_PER_SEC: " ", PORT: "8080" });
    expect(unset.functionEnv).toEqual({});
    const { functionEnv, api } = deployed(unset);
    expect(Object.keys(functionEnv).sort()).toEqual(["APP_URL", "NODE_ENV", "STREAM_URL"]);
    expect(api.engineTimeoutMs).toBe(readApiConfig(SECRETS).engineTimeoutMs);
    expect(api.settings.tradeRate).toEqual(readApiConfig(SECRETS).settings.tradeRate);
  });

  it("leave nothing the API reads unaccounted for: secret, set by the deploy, passed on, or not, and why", () => {
    const seen = new Set<string>();
    const reading = (env: Record<string, string>) =>
      new Proxy(env, {
        get: (target, key: string) => {
          seen.add(key);
          return target[key];
        },
      });
    const deploy = readDeploySettings(values);
    readApiConfig(reading({ ...SECRETS, ...deployed(deploy).functionEnv }));
    // The branches a deployment does not take (no Upstash, no Resend key) read the rest.
    readApiConfig(reading({ DATABASE_URL: SECRETS.DATABASE_URL! }));
    readApiConfig(reading({ DATABASE_URL: SECRETS.DATABASE_URL!, RESEND_API_KEY: "re_key" }));
    const accounted = new Set([
      ...Object.keys(FUNCTION_SECRET_ENV),
      ...Object.keys(functionPlainEnv({ functionEnv: {} }, { appUrl: "", streamUrl: "" })),
      ...FUNCTION_SETTINGS,
      ...Object.keys(FUNCTION_SETTINGS_NOT_PASSED),
    ]);
    expect(seen.size).toBeGreaterThan(20);
    expect([...seen].filter((name) => !accounted.has(name))).toEqual([]);
    expect(Object.keys(FUNCTION_SETTINGS_NOT_PASSED).filter((name) => !seen.has(name))).toEqual([]);
    // What the API reads of the containers' settings the deploy warns about names the functions among the readers.
    const unnamed = Object.entries(CONTAINER_SETTINGS_NOT_PASSED)
      .filter(([name, { readers }]) => seen.has(name) && !readers.includes("the functions"))
      .map(([name]) => name);
    expect(unnamed).toEqual([]);
  });

  it("refuses an engine wait the function would not live through", () => {
    expect(ENGINE_TIMEOUT_MAX_MS).toBe(10_000);
    expect(readDeploySettings({ ENGINE_TIMEOUT_MS: "10000" }).functionEnv.ENGINE_TIMEOUT_MS).toBe("10000");
    expect(() => readDeploySettings({ ENGINE_TIMEOUT_MS: "10001" })).toThrow(
      /ENGINE_TIMEOUT_MS must be at most 10000 when deployed: the functions time out after 15 seconds/,
    );
  });

  it("give the stream its browser origins, beside its plan's settings and the API's URL", () => {
    const env = streamPlainEnv(readDeploySettings(values), "https://api.example.com");
    expect(env).toEqual({
      ...CONTAINER_PLANS.stream.env,
      CORS_ORIGINS: values.CORS_ORIGINS,
      APP_URL: "https://api.example.com",
    });
  });
});

describe("browser frontends the settings would leave without their session", () => {
  it("warns when CORS_ORIGINS lists frontends but the API has no domain of theirs", () => {
    const { warnings } = readDeploySettings({
      CORS_ORIGINS: "https://app.example.com",
      STREAM_DOMAIN: "s.example.com",
    });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/CORS_ORIGINS lists https:\/\/app\.example\.com, but without API_DOMAIN/);
    expect(warnings[0]).toMatch(/SameSite=Lax.*401.*Set API_DOMAIN/);
    expect(readDeploySettings({ STREAM_DOMAIN: "s.example.com" }).warnings).toEqual([]);
  });

  it("warns about each frontend on another site than API_DOMAIN, or on http", () => {
    const { warnings } = readDeploySettings({
      API_DOMAIN: "api.example.com",
      STREAM_DOMAIN: "stream.example.com",
      CORS_ORIGINS: "https://app.example.com,https://example.com,http://app.example.com,https://app.example.org",
    });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^CORS_ORIGINS lists http:\/\/app\.example\.com, https:\/\/app\.example\.org, not/);
    expect(warnings[0]).toMatch(/not on the site of API_DOMAIN api\.example\.com: .*401/);
  });

  it("warns that a page served over https cannot open the stream without STREAM_DOMAIN", () => {
    const { warnings } = readDeploySettings({ API_DOMAIN: "api.example.com", CORS_ORIGINS: "https://app.example.com" });
    expect(warnings).toEqual([
      expect.stringMatching(/without STREAM_DOMAIN the stream is plain ws:\/\/.*mixed content/),
    ]);
  });
});

/** Variables of .env.example a deploy neither passes on, nor sets itself, nor warns about when set: and why. */
const LOCAL_ONLY: Readonly<Record<string, string>> = {
  LOCAL_REDIS_PROBE_URL: "npm start's",
  DATA_DIR: "npm start's",
  ENGINE_2_METRICS_PORT: "npm start's second engine; each deployed engine task reads ENGINE_METRICS_PORT",
  API_METRICS_PORT: "the Node API's; the functions serve no metrics",
  HOST: "the Node API's (and the stream's fallback, but its plan sets STREAM_HOST)",
  HTTP_HEADERS_TIMEOUT_MS: "the Node API's server; the functions have none",
  HTTP_REQUEST_TIMEOUT_MS: "the Node API's server; the functions have none",
  HTTP_KEEP_ALIVE_TIMEOUT_MS: "the Node API's server; the functions have none",
  SIM_WS_URL: "the local simulated feed; the deployed poller's FEED is backpack",
  NO_COLOR: "a terminal's; deployed, every process logs JSON",
};

describe("settings set where `sst deploy` runs that reach no process", () => {
  it("are named in one warning, with the processes that read them and the value they keep", () => {
    const { warnings } = readDeploySettings({
      INITIAL_BALANCE_USD: "500",
      SNAPSHOT_EVERY_MS: "5000",
      STREAM_MAX_SUBSCRIPTIONS: " ", // blank: not set
      ENGINE_TIMEOUT_MS: "8000", // passed on to the functions
      DATA_DIR: ".data", // npm start's, in a developer's .env
    });
    expect(warnings).toEqual([
      "INITIAL_BALANCE_USD=500 (engine; deployed: 10000), SNAPSHOT_EVERY_MS=5000 (engine; deployed: 10000) are set " +
        'where `sst deploy` runs, but a deploy passes them to no process, which keeps the value after "deployed" ' +
        "(the default): a container's plain settings are its plan's (CONTAINER_PLANS in infra/plan.ts), and the " +
        "functions get only FUNCTION_SETTINGS (infra/deploy-settings.ts). Change a container's plan to deploy one " +
        "there.",
    ]);
    expect(readDeploySettings({ LOG_LEVEL: "debug" }).warnings).toEqual([
      expect.stringMatching(
        /^LOG_LEVEL=debug \(engine, worker, poller, stream, the functions; deployed: info\) is set/,
      ),
    ]);
    expect(readDeploySettings({ KEY_PREFIX: "staging:" }).warnings).toEqual([
      expect.stringMatching(/^KEY_PREFIX=staging: \(engine, worker, poller, stream, the functions; deployed: unset\)/),
    ]);
    expect(readDeploySettings({}).warnings).toEqual([]);
  });

  it("are not warned about when set to the value deployed processes run with: a .env copied from .env.example", () => {
    const copied = parseEnv(readFileSync(".env.example", "utf8"));
    expect(copied.SNAPSHOT_EVERY_MS).toBe("10000");
    expect(readDeploySettings(copied).warnings).toEqual([]);
    // Edited in one place: that one only.
    expect(readDeploySettings({ ...copied, STREAM_MAX_SUBSCRIPTIONS: "80" }).warnings).toEqual([
      expect.stringMatching(/^STREAM_MAX_SUBSCRIPTIONS=80 \(stream; deployed: 50\) is set where/),
    ]);
  });

  it("give as deployed each one's default: the value .env.example shows, which the readers take as unset", () => {
    const copied = parseEnv(readFileSync(".env.example", "utf8"));
    const shown = Object.entries(CONTAINER_SETTINGS_NOT_PASSED)
      .filter(([name, { deployed }]) => copied[name] !== deployed)
      .map(([name, { deployed }]) => `${name}: ${deployed}, .env.example ${copied[name]}`);
    expect(shown).toEqual([]);
    // The readers this test can call (the engine's and the worker's are in their main.ts) read the same with each
    // set to its deployed value as with it unset.
    for (const [name, { readers, deployed }] of Object.entries(CONTAINER_SETTINGS_NOT_PASSED)) {
      const set = { ...SECRETS, [name]: deployed };
      if (readers.includes("stream")) expect(readStreamConfig(set), name).toEqual(readStreamConfig(SECRETS));
      if (readers.includes("poller")) expect(readPollerConfig(set), name).toEqual(readPollerConfig(SECRETS));
      for (const container of CONTAINERS.filter((c) => readers.includes(c)))
        expect(readMetricsConfig(set, container), name).toEqual(readMetricsConfig(SECRETS, container));
      expect(logLevel(set), name).toBe(logLevel(SECRETS));
    }
  });

  it("leave no variable of .env.example unaccounted for: passed on, set by the deploy, warned about, or local", () => {
    const example = readFileSync(".env.example", "utf8");
    const listed = [...example.matchAll(/^(?:# )?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!);
    const setByDeploy = [
      ...Object.keys(FUNCTION_SECRET_ENV),
      ...Object.keys(functionPlainEnv({ functionEnv: {} }, { appUrl: "", streamUrl: "" })),
      ...CONTAINERS.flatMap((name) => [
        ...Object.keys(CONTAINER_PLANS[name].secretEnv),
        ...Object.keys(CONTAINER_PLANS[name].env),
      ]),
    ];
    const accounted = new Set([
      ...FUNCTION_SETTINGS,
      ...STREAM_SETTINGS,
      ...setByDeploy,
      ...Object.keys(FUNCTION_SETTINGS_NOT_PASSED),
      ...Object.keys(CONTAINER_SETTINGS_NOT_PASSED),
      ...Object.keys(LOCAL_ONLY),
    ]);
    expect(listed.length).toBeGreaterThan(50);
    expect(listed.filter((name) => !accounted.has(name))).toEqual([]);
    // A warning for a setting that does reach a process would be wrong.
    const reaching = new Set<string>([...FUNCTION_SETTINGS, ...STREAM_SETTINGS, ...setByDeploy]);
    expect(Object.keys(CONTAINER_SETTINGS_NOT_PASSED).filter((name) => reaching.has(name))).toEqual([]);
    expect(Object.keys(LOCAL_ONLY).filter((name) => !listed.includes(name))).toEqual([]);
  });

  it("name the stream and the poller as readers exactly where their configuration readers read them", () => {
    // The engine's and the worker's are read in their main.ts, with no reader to call here.
    for (const [name, read] of [
      ["stream", readStreamConfig],
      ["poller", readPollerConfig],
    ] as const) {
      const seen = new Set<string>();
      const env = new Proxy(
        { ...SECRETS },
        {
          get: (target, key: string) => {
            seen.add(key);
            return target[key];
          },
        },
      );
      read(env);
      readMetricsConfig(env, name);
      const claimed = Object.entries(CONTAINER_SETTINGS_NOT_PASSED)
        .filter(([, { readers }]) => readers.includes(name))
        .map(([variable]) => variable);
      const plan = CONTAINER_PLANS[name];
      const unclaimed = [...seen].filter(
        (v) =>
          !claimed.includes(v) &&
          !(v in LOCAL_ONLY) &&
          !(v in plan.secretEnv) &&
          !(v in plan.env) &&
          v !== "METRICS_PORT_VARIABLE" && // npm start's, for its children's messages
          !(name === "stream" && (STREAM_SETTINGS as readonly string[]).includes(v)) &&
          // The stream's APP_URL is set by the deploy (streamPlainEnv); PORT and RESEND_API_KEY, the API's, give
          // its local defaults only (APP_URL's, the development origins).
          !(name === "stream" && ["APP_URL", "PORT", "RESEND_API_KEY"].includes(v)),
      );
      expect(unclaimed, name).toEqual([]);
      expect(
        claimed.filter((v) => !seen.has(v) && v !== "LOG_LEVEL"), // LOG_LEVEL: platform/log.ts, every process
        name,
      ).toEqual([]);
    }
  });
});
