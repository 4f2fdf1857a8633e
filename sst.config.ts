// eslint-disable-next-line @typescript-eslint/triple-slash-reference -- SST's convention: editors find its globals here.
/// <reference path="./.sst/platform/config.d.ts" />
/**
 * The deployed system, on AWS with SST v3: the auth, trade and account handlers as Lambda functions
 * behind an HTTP API, the engine, worker, poller and stream as always-on containers from one Dockerfile (the stream
 * behind a public load balancer, for the WebSocket clients), and the managed
 * services (Upstash Redis, Neon Postgres, Resend) plus the session key as per-stage secrets. infra/README.md says
 * how to set the secrets and deploy; infra/plan.ts holds the decisions as data.
 *
 * Type-checked against SST's own types (generated into .sst/platform by `npm run infra:types`) by
 * `npm run typecheck`, which skips this file and infra/sst/ with a notice while those types are absent; the root
 * tsconfig.json excludes them because `$config` and `sst` exist only as SST's globals.
 */
export default $config({
  app(input) {
    return {
      name: "paper-broker",
      home: "aws",
      // Production keeps its data-bearing resources if the stage is removed, and refuses `sst remove`.
      removal: input.stage === "prod" ? "retain" : "remove",
      protect: input.stage === "prod",
    };
  },
  async run() {
    // Imported here, not at the top: SST's globals (`sst`, `$util`) exist only while `run` runs.
    const { createSecrets } = await import("./infra/sst/secrets.ts");
    const { addFunctions, createGateway } = await import("./infra/sst/api.ts");
    const { streamUrlFrom } = await import("./infra/plan.ts");
    const { appUrlFor, functionPlainEnv, readDeploySettings } = await import("./infra/deploy-settings.ts");
    const { createServices } = await import("./infra/sst/services.ts");
    // API_DOMAIN, STREAM_DOMAIN and the API's settings, from the environment this runs in (infra/README.md).
    const deploy = readDeploySettings(process.env);
    for (const warning of deploy.warnings) console.warn(`paper-broker: ${warning}`);
    const secrets = createSecrets();
    const api = createGateway(deploy.apiDomain);
    const appUrl = appUrlFor(deploy.apiDomain, api.url);
    const services = createServices(secrets, deploy, appUrl);
    // SST's Service.url: https://<STREAM_DOMAIN>/ with a domain, the load balancer's http:// address without, and
    // under `sst dev` the local stream's (plan.ts devArgs).
    const streamUrl = services.stream.url.apply(streamUrlFrom);
    addFunctions(api, secrets, functionPlainEnv(deploy, { appUrl, streamUrl }));
    return { api: appUrl, stream: services.stream.url };
  },
});
