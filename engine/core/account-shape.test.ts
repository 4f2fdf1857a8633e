// Accounts keep the shape (V8's hidden class) they are made with. A number that does not fit a small integer, stored
// in a field every account so far held small integers in, would move the field to a double and deprecate the shape
// of every account made before, each then migrated on its next access: after a restore of 100k accounts, the first
// live open would do that, and a new leader's first scan of all accounts would take 150–300 ms.
import { setFlagsFromString } from "node:v8";
import { describe, expect, it } from "vitest";
import { newAccount } from "./state.ts";

// V8's own answer to "do these objects share a shape": natives syntax, allowed from here on in this test process.
setFlagsFromString("--allow-natives-syntax");
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- natives syntax parses only in code compiled after the flag
const haveSameShape = new Function("a", "b", "return %HaveSameMap(a, b)") as (a: object, b: object) => boolean;

describe("accounts keep one shape", () => {
  it("USD amounts past 2^31 micros in one account leave the shape of accounts holding small ones as it is", () => {
    // As a restore makes them: free USD and open margin small integers (100 USD free, 990 USD in open trades).
    const restored = newAccount("restored", 1);
    restored.usd = 100_000_000;
    restored.openMarginMicros = 990_000_000;
    const rich = newAccount("rich", 1);
    rich.usd = 2 ** 31;
    const leveraged = newAccount("leveraged", 1);
    leveraged.openMarginMicros = 2 ** 31;
    expect([haveSameShape(restored, rich), haveSameShape(restored, leveraged)]).toEqual([true, true]);
  });
});
