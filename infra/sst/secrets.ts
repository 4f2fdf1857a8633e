/**
 * The stage's secrets (infra/plan.ts lists them and says what each holds). SST keeps their values encrypted in the
 * stage's state; a deploy with one unset stops with "Set a value for <Name> with `sst secret set <Name> <value>`"
 * before anything is created. Needs SST's globals: import only from sst.config.ts's `run`.
 */
import { SECRETS, type SecretName } from "../plan.ts";

export type Secrets = Readonly<Record<SecretName, sst.Secret>>;

export function createSecrets(): Secrets {
  const names = Object.keys(SECRETS) as SecretName[];
  return Object.fromEntries(names.map((name) => [name, new sst.Secret(name)])) as Record<SecretName, sst.Secret>;
}

/** Environment variables from secrets, for a function's or a container's `environment`. */
export function secretEnv(
  mapping: Readonly<Record<string, SecretName>>,
  secrets: Secrets,
): Record<string, $util.Output<string>> {
  return Object.fromEntries(Object.entries(mapping).map(([variable, secret]) => [variable, secrets[secret].value]));
}
