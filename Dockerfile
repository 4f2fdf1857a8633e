# One image for the always-on components (engine, worker, poller, stream; the Node API too). The component is chosen by
# the command: each SST service (infra/sst/services.ts) sets the one `npm start` runs for it, `node <flags>
# dist/<name>.mjs` from platform/components.ts; the default below is the engine's. No wrapper script, so the
# component is the container's main process and gets ECS's SIGTERM (each registers its own handler and stops
# cleanly). On ECS it is not PID 1: SST turns on the task's init process (`initProcessEnabled`), which is PID 1,
# forwards the signal to it and reaps orphans; under a plain `docker run` without `--init` it is PID 1 itself.
#
# The processes run bundles (platform/build.ts), built here from the sources with esbuild (through tsx, which
# reads the component table), so both are runtime dependencies (package.json `dependencies`) and the dev tools
# (TypeScript, ESLint, Vitest, the SST CLI) stay out: `npm ci --omit=dev`. Install scripts are skipped: none is
# needed (esbuild's platform binary comes as an optional package).
#
# No secrets here: configuration comes from the environment at run time (see .env.example; SST passes the stage's
# secrets). .dockerignore keeps .env, .data, .sst, dist and the tests out of the build context.
#
# Node 22, as the functions on Lambda (infra/plan.ts FUNCTION_RUNTIME): Node 20 reached its end of life in April 2026.
FROM node:22-slim

ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY client ./client
COPY contract ./contract
COPY engine ./engine
COPY functions ./functions
COPY migrations ./migrations
COPY platform ./platform
COPY poller ./poller
COPY stream ./stream
COPY worker ./worker
COPY scripts ./scripts
RUN node scripts/build.mjs

# Code owned by root, run as the image's unprivileged `node` user: the process cannot rewrite it.
USER node
CMD ["node", "--enable-source-maps", "--max-semi-space-size=64", "--initial-old-space-size=512", "--max-old-space-size=1536", "dist/engine.mjs"]
