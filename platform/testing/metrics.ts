/** Test support: scraping a process's `/metrics` and reading samples from the Prometheus text format. */

/** Sample name with its labels as Prometheus prints them (`name{a="x",b="y"}`, or `name`) → value. */
export type Samples = ReadonlyMap<string, number>;

export async function scrape(port: number): Promise<Samples> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics on port ${port} answered ${res.status}`);
  return parseSamples(await res.text());
}

export function parseSamples(text: string): Samples {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** The sample's value; throws, listing what there is under that name, when it is missing. */
export function sample(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  const key = Object.keys(labels).length === 0 ? name : `${name}{${labelText(labels)}}`;
  const value = samples.get(key);
  if (value !== undefined) return value;
  const similar = [...samples.keys()].filter((k) => k.startsWith(name));
  throw new Error(`no sample ${key}; there are: ${similar.join(", ") || "none by that name"}`);
}

function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(",");
}
