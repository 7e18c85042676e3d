// The queue baseline of `shoal-loadtest latency`: BullMQ no-op jobs submitted open-loop at each
// given rate for a while, producer and worker in this one Node process (concurrency 100), against
// the redis-server the harness started. For each rate it prints, as one JSON document on stdout,
// every job's latency (from the moment it was due to be added to its worker's `completed` event,
// so a producer falling behind counts against it), the backlog (due and not completed) sampled
// every half second, and the CPU this process and Redis used. The harness computes the
// percentiles, the same way for both systems.
//
// node latency.mjs --redis URL --rates 250,500 --secs 10 --drain-secs 20 [--concurrency 100]

import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const redisUrl = args.redis;
const rates = (args.rates ?? "").split(",").filter(Boolean).map(Number);
const secs = Number(args.secs ?? 10);
const drainSecs = Number(args["drain-secs"] ?? 20);
const concurrency = Number(args.concurrency ?? 100);
if (!redisUrl || rates.length === 0 || rates.some((r) => !(r > 0))) {
  console.error("usage: node latency.mjs --redis URL --rates R1,R2,... [--secs N] [--drain-secs N] [--concurrency N]");
  process.exit(2);
}

const BACKLOG_EVERY_MS = 500;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Redis's own CPU seconds so far (INFO cpu), user + system. */
async function redisCpu(conn) {
  const info = await conn.info("cpu");
  const field = (name) => Number((info.match(new RegExp(`${name}:([0-9.]+)`)) ?? [0, 0])[1]);
  return field("used_cpu_user") + field("used_cpu_sys");
}

/**
 * Voluntary context switches of process `pid`'s threads alive now (0 if unreadable): the same
 * count as the harness's `process_context_switches` for Shoal's processes.
 */
function processSwitches(pid) {
  let total = 0;
  let tasks = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  for (const task of tasks) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, "utf8");
      total += Number((status.match(/^voluntary_ctxt_switches:\s+(\d+)/m) ?? [0, 0])[1]);
    } catch {
      // The thread exited meanwhile; its counts went with it.
    }
  }
  return total;
}

/** Redis's process id (INFO server). */
async function redisPid(conn) {
  const info = await conn.info("server");
  return Number((info.match(/process_id:(\d+)/) ?? [0, 0])[1]);
}

/** The machine's 1-minute load average. */
function loadavg() {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

/** This process's CPU seconds so far, user + system. */
function ownCpu() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

async function step(conn, rate) {
  const name = `latency-${rate}-${Date.now()}`;
  const queue = new Queue(name, { connection: conn });
  const due = new Map();
  let t0 = performance.now();
  const latencies = [];
  const doneAt = [];
  let added = 0;
  let failed = 0;
  let addErrors = 0;
  const workerConn = conn.duplicate({ maxRetriesPerRequest: null });
  const worker = new Worker(name, async () => {}, { connection: workerConn, concurrency });
  worker.on("completed", (job) => {
    const started = due.get(job.id);
    if (started !== undefined) {
      latencies.push(performance.now() - started);
      doneAt.push((performance.now() - t0) / 1000);
      due.delete(job.id);
    }
  });
  worker.on("failed", () => {
    failed += 1;
  });
  await worker.waitUntilReady();

  const redisCpuBefore = await redisCpu(conn);
  const ownCpuBefore = ownCpu();
  const redisProcess = await redisPid(conn);
  const switchesBefore = { node: processSwitches(process.pid), redis: processSwitches(redisProcess) };
  const loadBefore = loadavg();
  const total = Math.round(rate * secs);
  t0 = performance.now();
  const backlog = [];
  let next = 0;
  const sampler = setInterval(() => {
    // Due and not yet completed (or refused): a producer falling behind is backlog too.
    backlog.push([(performance.now() - t0) / 1000, next - latencies.length - failed - addErrors]);
  }, BACKLOG_EVERY_MS);
  const adds = [];
  while (next < total) {
    const now = performance.now();
    while (next < total && t0 + (next * 1000) / rate <= now) {
      const dueAt = t0 + (next * 1000) / rate;
      // BullMQ refuses custom ids that are integers.
      const id = `job-${next}`;
      due.set(id, dueAt);
      adds.push(
        queue.add("noop", { n: next }, { jobId: id, removeOnComplete: true, removeOnFail: true }).then(
          () => {
            added += 1;
          },
          (error) => {
            due.delete(id);
            addErrors += 1;
            if (addErrors === 1) console.error(`adding a job failed: ${error}`);
          },
        ),
      );
      next += 1;
    }
    await sleep(1);
  }
  const offeredSecs = (performance.now() - t0) / 1000;
  await Promise.all(adds);
  const drainUntil = performance.now() + drainSecs * 1000;
  while (latencies.length + failed < added && performance.now() < drainUntil) {
    await sleep(5);
  }
  const elapsedSecs = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const cpu = { node_s: ownCpu() - ownCpuBefore, redis_s: (await redisCpu(conn)) - redisCpuBefore };
  const switches = {
    node: Math.max(0, processSwitches(process.pid) - switchesBefore.node),
    redis: Math.max(0, processSwitches(redisProcess) - switchesBefore.redis),
  };
  // Jobs still waiting at the cut-off count at their wait so far: a lower bound.
  const cutOff = performance.now();
  const unfinished = [...due.values()].map((dueAt) => cutOff - dueAt);
  await worker.close(true);
  await workerConn.quit();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  return {
    offered_per_s: rate,
    planned: total,
    added,
    completed: latencies.length,
    failed,
    add_errors: addErrors,
    offered_secs: offeredSecs,
    elapsed_secs: elapsedSecs,
    latencies_ms: latencies,
    done_at_s: doneAt,
    unfinished_waits_ms: unfinished,
    backlog,
    cpu,
    switches,
    loadavg: [loadBefore, loadavg()],
  };
}

const require = createRequire(import.meta.url);
const conn = new IORedis(redisUrl, { maxRetriesPerRequest: null });
const steps = [];
for (const rate of rates) {
  steps.push(await step(conn, rate));
}
await conn.quit();
// Exit once the report is out, whatever connection BullMQ may still hold open.
process.stdout.write(
  JSON.stringify({
    bullmq: require("bullmq/package.json").version,
    ioredis: require("ioredis/package.json").version,
    node: process.version,
    concurrency,
    steps,
  }) + "\n",
  () => process.exit(0),
);
