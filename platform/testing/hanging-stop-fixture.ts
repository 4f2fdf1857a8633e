/**
 * A child for platform/config.test.ts: asks onStopRequest for its stop, whose clean stop never ends (as when its Redis
 * is gone as well), with the stop budget in ms given as the first argument; says "ready" over IPC when it has a
 * channel (a supervisor), else on stdout.
 */
import { onStopRequest } from "../config.ts";

onStopRequest((reason) => process.stdout.write(`stopping ${reason}\n`), { stopBudgetMs: Number(process.argv[2]) });
setInterval(() => undefined, 1_000); // the stop that hangs: something keeps the process alive
if (process.send === undefined) process.stdout.write("ready\n");
else process.send("ready");
