#!/usr/bin/env node
// BullMQ peer for conductor's distributed-mode benchmark (bench/run.py, NATS-* workloads).
//
// Same job as conductor's examples/throughput.rs: job n spins --work-us µs of CPU on
// the clock and returns n*n; the master sums the results and checks the sum.
//
//   node bench.js --jobs 20000 --workers 2 --work-us 0 [--batch 500] [--concurrency C]
//
// Concurrency C defaults to 50 for trivial jobs one per BullMQ job, 4 for jobs that
// spin, and 1 with --batch > 1.
//
// The master forks W worker processes, each one BullMQ Worker with concurrency C,
// on a queue whose name is unique to the run; waits until each is connected; adds
// every job (Queue.addBulk, 1,000 at a time); counts the `completed` events of a
// QueueEvents reader and sums their return values; then stops the workers,
// obliterates the queue and prints one JSON line with the keys of the conductor
// example. --batch B puts B jobs in one BullMQ job (the worker returns their sum).
// `secs` runs from the first add to the last completed event; worker startup is not
// in it (it is `startup_secs`). Redis: redis://127.0.0.1:6379/9 by default
// (BULLMQ_BENCH_REDIS overrides).

'use strict';
const { fork } = require('node:child_process');
const { Queue, QueueEvents, Worker } = require('bullmq');
const IORedis = require('ioredis');

const REDIS_URL = process.env.BULLMQ_BENCH_REDIS || 'redis://127.0.0.1:6379/9';

function parseArgs(argv) {
  const args = { jobs: 20000, workers: 2, workUs: 0, payloadBytes: 0, batch: 1, concurrency: 0,
                 child: false, queue: '' };
  const names = { '--jobs': 'jobs', '--workers': 'workers', '--work-us': 'workUs',
                  '--payload-bytes': 'payloadBytes', '--batch': 'batch',
                  '--concurrency': 'concurrency', '--queue': 'queue' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--child') { args.child = true; continue; }
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) throw new Error(`bad flag ${argv[i]}`);
    args[key] = key === 'queue' ? argv[++i] : Number(argv[++i]);
  }
  if (!args.concurrency) {
    // Trivial jobs one per BullMQ job: enough in flight per process to hide the Redis
    // round trips. CPU-bound jobs block the event loop, so a few suffice. A batch of
    // 500 is one long job: one at a time, or one process would hold batches that the
    // other could run.
    args.concurrency = args.batch > 1 ? 1 : args.workUs ? 4 : 50;
  }
  return args;
}

function connection() {
  // BullMQ wants maxRetriesPerRequest: null on connections that block.
  return new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
}

function spin(workUs) {
  if (!workUs) return;
  const until = process.hrtime.bigint() + BigInt(workUs) * 1000n;
  while (process.hrtime.bigint() < until) { /* spin */ }
}

// ------------------------------------------------------------------ worker process

async function child(args) {
  const conn = connection();
  const worker = new Worker(args.queue, async (job) => {
    const { ns, us } = job.data;  // ns: the job numbers this BullMQ job carries
    let sum = 0;
    for (const n of ns) {
      spin(us);
      sum += n * n;
    }
    return sum;
  }, { connection: conn, concurrency: args.concurrency });
  worker.on('error', (err) => console.error('worker error:', err));
  process.on('message', async (msg) => {
    if (msg === 'stop') {
      await worker.close();
      await conn.quit();
      process.exit(0);
    }
  });
  process.on('disconnect', () => process.exit(1));  // the master is gone
  await worker.waitUntilReady();
  process.send('ready');
}

// ------------------------------------------------------------------ master

function peakRssMib() {
  return process.resourceUsage().maxRSS / 1024;  // maxRSS is in KiB
}

async function master(args) {
  if (args.payloadBytes) throw new Error('--payload-bytes is not supported (NATS-1MiB is conductor only)');
  const queueName = `conductor-bench-${process.pid}-${Date.now()}`;
  const bullJobs = Math.ceil(args.jobs / args.batch);
  const conn = connection();
  // The events stream keeps every event of the run (the default keeps ~10,000):
  // a reader that falls behind must not lose `completed` events.
  const queue = new Queue(queueName, { connection: conn,
                                       streams: { events: { maxLen: 10 * bullJobs + 10000 } } });
  const eventsConn = connection();
  const events = new QueueEvents(queueName, { connection: eventsConn, lastEventId: '0-0' });

  const children = [];
  try {
    return await run(args, queue, events, children, bullJobs);
  } finally {
    // Also on failure: no worker process and no key of this run's queue is left behind.
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await events.close().catch(() => {});
    await queue.obliterate({ force: true }).catch((e) => console.error('obliterate:', e.message));
    await queue.close().catch(() => {});
    await Promise.all([conn.quit(), eventsConn.quit()]).catch(() => {});
  }
}

async function run(args, queue, events, children, bullJobs) {
  const t0 = performance.now();
  for (let w = 0; w < args.workers; w++) {
    children.push(fork(__filename, ['--child', '--queue', queue.name,
                                    '--concurrency', String(args.concurrency)],
                       { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  }
  await Promise.all([
    queue.waitUntilReady(), events.waitUntilReady(),
    ...children.map((c) => new Promise((resolve, reject) => {
      c.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error(String(m)))));
      c.once('exit', (code) => reject(new Error(`worker exited with ${code} before it was ready`)));
    })),
  ]);
  const startup = (performance.now() - t0) / 1000;

  let total = 0n, completed = 0, failed = 0, finishedAt = 0;
  const seen = new Set();
  let finished = false;
  const done = new Promise((resolve, reject) => {
    for (const c of children) {
      c.once('exit', (code, sig) => {
        if (!finished) reject(new Error(`a worker process exited (${sig || code}) before the last result`));
      });
    }
    const check = () => {
      if (seen.size === bullJobs) { finishedAt = performance.now(); finished = true; resolve(); }
    };
    events.on('completed', ({ jobId, returnvalue }) => {
      if (seen.has(jobId)) return;
      seen.add(jobId);
      total += BigInt(returnvalue);
      completed += 1;
      check();
    });
    events.on('failed', ({ jobId, failedReason }) => {
      if (seen.has(jobId)) return;
      seen.add(jobId);
      failed += 1;
      console.error(`job ${jobId} failed: ${failedReason}`);
      check();
    });
  });

  const started = performance.now();  // secs: from the first add to the last result
  const ADD = 1000;
  let n = 0;
  for (let b = 0; b < bullJobs; b += ADD) {
    const bulk = [];
    for (let j = b; j < Math.min(b + ADD, bullJobs); j++) {
      const ns = [];
      for (let k = 0; k < args.batch && n < args.jobs; k++) ns.push(n++);
      bulk.push({ name: 'square', data: { ns, us: args.workUs } });
    }
    await queue.addBulk(bulk);
  }
  await done;
  const secs = (finishedAt - started) / 1000;

  const t1 = performance.now();
  for (const c of children) c.send('stop');
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null
    : new Promise((resolve) => c.once('exit', resolve)))));
  const stop = (performance.now() - t1) / 1000;

  const N = BigInt(args.jobs);
  const expected = (N - 1n) * N * (2n * N - 1n) / 6n;  // sum of n*n
  if (failed) throw new Error(`${failed} BullMQ jobs failed`);
  if (total !== expected) throw new Error(`outputs do not add up: ${total} != ${expected}`);
  console.log(JSON.stringify({
    system: args.batch > 1 ? `bullmq-${args.batch}` : 'bullmq',
    jobs: args.jobs,
    workers: args.workers,
    work_us: args.workUs,
    payload_bytes: 0,
    completed: args.jobs,
    failed: 0,
    secs: Number(secs.toFixed(6)),
    jobs_per_sec: Number((args.jobs / secs).toFixed(1)),
    master_peak_rss_mib: Number(peakRssMib().toFixed(1)),
    startup_secs: Number(startup.toFixed(6)),
    stop_secs: Number(stop.toFixed(6)),
    batch: args.batch,
    bullmq_jobs: bullJobs,
    concurrency: args.concurrency,
    bullmq: require('bullmq/package.json').version,
  }));
}

const args = parseArgs(process.argv.slice(2));
(args.child ? child(args) : master(args)).catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
