// Worker threads do not inherit the parent's module hooks, so this plain-JS entry registers tsx's loader in the
// thread and then loads the TypeScript follower.
import { register } from "tsx/esm/api";

register();
await import("./follower-thread.ts");
