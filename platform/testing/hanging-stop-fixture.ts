/**
 * A child for platform/config.test.ts: asks onStopRequest for its stop, whose clean stop never ends (as when its Redis
 * is gone as well), with the orphan budget in ms given as the first argument; says "ready" over IPC.
 */
import { onStopRequest } from "../config.ts";

onStopRequest(() => process.stdout.write("stopping\n"), { orphanStopBudgetMs: Number(process.argv[2]) });
setInterval(() => undefined, 1_000); // the stop that hangs: something keeps the process alive
process.send?.("ready");
