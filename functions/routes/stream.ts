/**
 * The live stream's HTTP side (docs/api.md): a signed-in user asks for a ticket here, then opens the WebSocket at
 * the answer's `url` with `?ticket=` (functions/auth/stream-tickets.ts says why a ticket and not the session).
 */
import { issueStreamTicket } from "../auth/stream-tickets.ts";
import type { ApiDeps } from "../context.ts";
import { limitRate, requireSession } from "../middleware.ts";
import {
  JSON_BODY_ERRORS,
  apiRouter,
  createRoute,
  errorResponses,
  jsonResponse,
  optionalJsonBody,
  route,
  SIGNED_IN,
} from "../openapi.ts";
import { responses, streamTicketRequest } from "../schemas.ts";

export function streamRoutes(deps: ApiDeps) {
  const app = apiRouter();

  const ticket = createRoute({
    method: "post",
    path: "/ticket",
    operationId: "createStreamTicket",
    tags: ["Stream"],
    summary: "A ticket to open the live stream with",
    description:
      "Single use, valid 30 s: open the WebSocket at `url` with `?ticket=<ticket>`. The socket belongs to this " +
      "session and closes (4401) when the session is signed out or expires. Ask for a new ticket for every " +
      "connection, reconnects included. No body (or `{}`): a field is a 400 naming it. Limited per user " +
      "(STREAM_TICKET_LIMIT_PER_MIN).",
    security: SIGNED_IN,
    request: { body: optionalJsonBody(streamTicketRequest) },
    middleware: requireSession(deps),
    limit: limitRate(deps, "stream-ticket", deps.settings.streamTicketRate, (c) => c.get("session").userId),
    responses: {
      201: jsonResponse(responses.streamTicket, "The ticket and where to use it"),
      ...errorResponses([...JSON_BODY_ERRORS, "UNAUTHENTICATED", "RATE_LIMITED", "UNAVAILABLE"]),
    },
  });
  route(app, ticket, async (c) => {
    const { ticket, expiresAtMs } = await issueStreamTicket(deps.redis, deps.keys, c.get("session"), Date.now());
    return c.json({ ticket, url: deps.settings.streamUrl, expiresAt: new Date(expiresAtMs).toISOString() }, 201);
  });

  return app;
}
