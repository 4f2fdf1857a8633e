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
  streamServiceArgs,
  containerCommand,
  devArgs,
  type ContainerName,
  type DeployPlan,
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
    const service = new sst.aws.Service(title(name), {
      cluster,
      // The same build context and Dockerfile for all four: Docker's layer cache builds the image once per deploy.
      image: { context: ".", dockerfile: "Dockerfile" },
      command: containerCommand(name),
      environment: {
        ...secretEnv(plan.secretEnv, secrets),
        ...(name === "stream" ? streamPlainEnv(deploy, appUrl) : plan.env),
      },
      ...(name === "stream" ? streamArgs(deploy.streamDomain) : {}),
      cpu: plan.cpu,
      memory: plan.memory,
      scaling: { min: plan.tasks, max: plan.tasks },
      ...(plan.deploy ? deployArgs(plan.deploy) : {}),
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

/**
 * A rolling deploy's settings as Service args: the health check, if any, through SST's `health`; the deployment bounds
 * and the stop timeout, if any, which SST does not expose, through `transform` on the ECS service and on the task
 * definition's container definitions (a JSON string SST builds; it has one container, the service's).
 */
function deployArgs(deploy: DeployPlan) {
  const { health, stopTimeoutSeconds } = deploy;
  return {
    ...(health === undefined
      ? {}
      : {
          health: {
            command: [...health.command],
            startPeriod: `${health.startPeriodSeconds} seconds` as const,
            interval: `${health.intervalSeconds} seconds` as const,
            timeout: `${health.timeoutSeconds} seconds` as const,
            retries: health.retries,
          },
        }),
    transform: {
      service: {
        deploymentMinimumHealthyPercent: deploy.minimumHealthyPercent,
        deploymentMaximumPercent: deploy.maximumPercent,
      },
      ...(stopTimeoutSeconds === undefined
        ? {}
        : {
            taskDefinition: (args: aws.ecs.TaskDefinitionArgs) => {
              args.containerDefinitions = $output(args.containerDefinitions).apply((json) =>
                JSON.stringify(
                  (JSON.parse(json) as Record<string, unknown>[]).map((container) => ({
                    ...container,
                    stopTimeout: stopTimeoutSeconds,
                  })),
                ),
              );
            },
          }),
    },
  } satisfies Partial<sst.aws.ServiceArgs>;
}

function title(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}
