import { describe, expect, it } from "vitest";
import { signInEmailSubject, signInIpSubject } from "./admission.ts";

describe("sign-in limit subjects", () => {
  it("counts +tag variants, and Gmail's dotted spellings, as the one inbox they reach", () => {
    expect(signInEmailSubject("victim+1@example.com")).toBe("victim@example.com");
    expect(signInEmailSubject("victim+a+b@example.com")).toBe("victim@example.com");
    expect(signInEmailSubject("v.i.c.tim+x@gmail.com")).toBe("victim@gmail.com");
    expect(signInEmailSubject("victim@googlemail.com")).toBe("victim@gmail.com");
    expect(signInEmailSubject("first.last@example.com")).toBe("first.last@example.com"); // dots matter elsewhere
  });

  it("counts IPv4 per address and IPv6 per /64", () => {
    expect(signInIpSubject("203.0.113.7")).toBe("203.0.113.7");
    expect(signInIpSubject("::ffff:203.0.113.7")).toBe("::ffff:203.0.113.7");
    expect(signInIpSubject("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
    expect(signInIpSubject("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(signInIpSubject("2001:0db8:0001:0002::ffff")).toBe("2001:db8:1:2::/64");
    expect(signInIpSubject("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(signInIpSubject("::1")).toBe("0:0:0:0::/64");
  });
});
