# One image for the always-on components (engine, worker, poller; the Node API too). The component is chosen by
# the command: each SST service (infra/sst/services.ts) sets the one `npm start` runs for it, `node <flags> --import
# tsx <entry>` from platform/components.ts; the default below is the engine's. No wrapper script, so the component
# is PID 1 and gets ECS's SIGTERM directly (each registers its own handler and stops cleanly).
#
# The sources run through tsx as they do locally, so tsx is a runtime dependency (package.json `dependencies`) and
# the dev tools (TypeScript, ESLint, Vitest, the SST CLI) stay out: `npm ci --omit=dev`. Install scripts are
# skipped: none is needed at run time (esbuild's platform binary comes as an optional package).
#
# No secrets here: configuration comes from the environment at run time (see .env.example; SST passes the stage's
# secrets). .dockerignore keeps .env, .data, .sst and the tests out of the build context.
FROM node:20-slim

ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY contract ./contract
COPY engine ./engine
COPY functions ./functions
COPY migrations ./migrations
COPY platform ./platform
COPY poller ./poller
COPY worker ./worker

# Code owned by root, run as the image's unprivileged `node` user: the process cannot rewrite it.
USER node
CMD ["node", "--max-semi-space-size=64", "--import", "tsx", "engine/main.ts"]
