/**
 * The always-on containers: engine, worker, poller and stream as ECS Fargate services in one cluster, all from the
 * one Dockerfile, each with the command `npm start` runs for it (platform/components.ts, via infra/plan.ts). The VPC
 * has public subnets only (no NAT gateway to pay for): the tasks get public IPs to reach Upstash, Neon and Backpack.
 * Only the stream listens publicly, behind its load balancer (plan.ts streamLoadBalancer); each process's metrics
 * port binds the task's loopback (no collector is defined yet). In `sst dev` nothing is deployed: each runs locally
 * as its npm script with the same environment, and the stream's URL is its local address (plan.ts devArgs). Needs
 * SST's globals: import only from sst.config.ts's `run`.
 */
import {
  CONTAINER_PLANS,
  CONTAINERS,
  containerDefinitions,
  streamServiceArgs,
  containerCommand,
  devArgs,
  type ContainerName,
  type DeployPlan,
  type HealthCheckPlan,
} from "../plan.ts";
import { streamPlainEnv, type DeploySettings } from "../deploy-settings.ts";
import { secretEnv, type Secrets } from "./secrets.ts";

/** `appUrl`: the API's URL, whose origin may open the stream (the stream's APP_URL). */
export function createServices(
  secrets: Secrets,
  deploy: DeploySettings,
  appUrl: $util.Input<string>,
): Record<ContainerName, sst.aws.Service> {
  const vpc = new sst.aws.Vpc("Vpc");
  const cluster = new sst.aws.Cluster("Cluster", { vpc });
  const entries = CONTAINERS.map((name) => {
    const plan = CONTAINER_PLANS[name];
    const stream = name === "stream" ? streamArgs(deploy.streamDomain) : undefined;
    const health = plan.deploy?.health;
    const service = new sst.aws.Service(title(name), {
      cluster,
      // The same build context and Dockerfile for all four: Docker's layer cache builds the image once per deploy.
      image: { context: ".", dockerfile: "Dockerfile" },
      command: containerCommand(name),
      environment: {
        ...secretEnv(plan.secretEnv, secrets),
        ...(name === "stream" ? streamPlainEnv(deploy, appUrl) : plan.env),
      },
      ...(stream === undefined ? {} : { loadBalancer: stream.loadBalancer }),
      cpu: plan.cpu,
      memory: plan.memory,
      scaling: { min: plan.tasks, max: plan.tasks },
      ...(health === undefined ? {} : { health: healthArgs(health) }),
      // What SST does not expose: the stream's load balancer settings, a deploy plan's bounds on the ECS service, and
      // every task's container definitions (plan.ts containerDefinitions: no terminal; a plan's stop timeout).
      transform: {
        ...stream?.transform,
        ...(plan.deploy === undefined ? {} : { service: deploymentArgs(plan.deploy) }),
        taskDefinition: (args: aws.ecs.TaskDefinitionArgs) => {
          args.containerDefinitions = $output(args.containerDefinitions).apply((json) =>
            containerDefinitions(json, plan.deploy),
          );
        },
      },
      dev: devArgs(name),
    });
    return [name, service] as const;
  });
  return Object.fromEntries(entries) as Record<ContainerName, sst.aws.Service>;
}

/** The stream's load balancer as Service args (plan.ts streamServiceArgs), checked against SST's types. */
function streamArgs(domain: string | undefined) {
  return streamServiceArgs(domain) satisfies Partial<sst.aws.ServiceArgs>;
}

/** A deploy plan's container health check as SST's `health`. */
function healthArgs(health: HealthCheckPlan) {
  return {
    command: [...health.command],
    startPeriod: `${health.startPeriodSeconds} seconds` as const,
    interval: `${health.intervalSeconds} seconds` as const,
    timeout: `${health.timeoutSeconds} seconds` as const,
    retries: health.retries,
  } satisfies sst.aws.ServiceArgs["health"];
}

/** A rolling deploy's task count bounds, which SST does not expose, for `transform.service`. */
function deploymentArgs(deploy: DeployPlan) {
  return {
    deploymentMinimumHealthyPercent: deploy.minimumHealthyPercent,
    deploymentMaximumPercent: deploy.maximumPercent,
  } satisfies Partial<aws.ecs.ServiceArgs>;
}

function title(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}
