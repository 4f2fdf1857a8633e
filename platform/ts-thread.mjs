// Worker threads do not inherit the parent's module hooks, so this plain-JS entry registers tsx's loader in the
// thread and then loads the TypeScript module whose URL startTsThread (threads.ts) passed as the last argument.
import { register } from "tsx/esm/api";

register();
await import(process.argv[process.argv.length - 1]);
