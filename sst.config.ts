/**
 * SST app definition. The deployed resources (functions, containers, secrets, links) are defined in infra/
 * by the deployment issue; until then this file only names the app, so `sst` commands fail clearly rather than
 * deploying something partial. It is not type-checked until SST's generated platform types exist (.sst/).
 */
export default {
  app() {
    return { name: "paper-broker", home: "aws" as const };
  },
  run() {
    throw new Error("Deployment is not defined yet: infra/ is filled by the deployment issue.");
  },
};
