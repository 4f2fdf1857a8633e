/**
 * The follower thread's stop request (engine/main.ts posts "stop" to it, and nothing else): delivered as an event
 * once the thread's event loop turns, or still queued on the port while the thread is busy saving a snapshot. A trim
 * refused in that window must find the request, so the check also takes it off the port.
 */
import { receiveMessageOnPort, type MessagePort } from "node:worker_threads";

/** A check that is true once "stop" came on `port`, as an event (`stop` aborted) or still queued. */
export function stopRequestedOn(port: MessagePort | null | undefined, stop: AbortController): () => boolean {
  return () => {
    if (!stop.signal.aborted && port && receiveMessageOnPort(port)?.message === "stop") stop.abort();
    return stop.signal.aborted;
  };
}
