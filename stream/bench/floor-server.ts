/**
 * bench:stream's floor: a bare `ws` server with nothing behind it (no Redis, no engine, no routing), forked by the
 * bench so the same client processes can read it. It welcomes each socket and, when asked, writes one quote-sized
 * frame to every socket as fast as Node can: framed once, one write per socket, straight to the socket. What a burst
 * to N sockets costs it on this machine is a floor for any stream process here, whatever its code.
 *
 * IPC (bench → server): `{op:"burst", id, frames}` → `{id, sentAt}`: `sentAt` the time (performance.timeOrigin +
 * performance.now(), as the clients stamp arrivals) just before the first write. `frames` quote frames (default 1;
 * assets FLOOR, or FLOOR0, FLOOR1, … as a tick of several markets) go to each socket in one write. A frame's
 * `updatedAt` is `sentAt` to the ms, so the clients' "<asset> <updatedAt as ms>" key finds it. First message to the
 * bench: `{port}` once listening.
 */
import type { AddressInfo, Socket } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import { SharedFrame } from "../connection.ts";

const server = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false });
const sockets = new Set<WebSocket>();
const welcome = JSON.stringify({ type: "welcome" });
server.on("connection", (ws) => {
  sockets.add(ws);
  ws.on("close", () => sockets.delete(ws));
  ws.send(welcome);
});
server.on("listening", () => process.send!({ port: (server.address() as AddressInfo).port }));

process.on("message", ({ id, frames = 1 }: { op: "burst"; id: number; frames?: number }) => {
  const sentAt = performance.timeOrigin + performance.now();
  const updatedAt = new Date(Math.floor(sentAt)).toISOString();
  const quote = (asset: string) =>
    new SharedFrame(
      Buffer.from(JSON.stringify({ type: "quote", asset, bid: "1", ask: "1", updatedAt, source: "floor" })),
    ).wire;
  const wire =
    frames === 1 ? quote("FLOOR") : Buffer.concat(Array.from({ length: frames }, (_, k) => quote(`FLOOR${k}`)));
  for (const ws of sockets) (ws as unknown as { _socket: Socket })._socket.write(wire);
  process.send!({ id, sentAt });
});
process.on("disconnect", () => {
  for (const ws of sockets) ws.terminate();
  server.close();
});
