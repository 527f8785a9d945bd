// Reads Vigil's alerts (vigil.alerts.out, stream ALERTS) and decisions
// (vigil.decisions.>, stream DECISIONS) from JetStream and prints one JSON line per
// alert or decision:
//
//   {"stream":"ALERTS","subject":"vigil.alerts.out","seq":7,"message":{...}}
//
// `message` is the payload exactly as Vigil published it (docs/asyncapi.yaml:
// Alert / AlertThreshold, Decision / AuditStarted / AuditFinished, ...). A DecisionBatch
// (several decisions in one bus message, docs/decisions.md) is printed as one line per
// decision, in order, with `index` its place in the batch.
//
// Payloads are copied as text, never re-serialised: times are integers in ns since the
// epoch, beyond the 2^53 a JavaScript number holds exactly, so JSON.parse + stringify
// would round them.
//
// Ordered consumers: ephemeral, in stream order, recreated by nats.js after a gap. A
// program that must resume where it stopped would use a durable consumer instead
// (js.consumers.get(stream, durableName), created with jsm.consumers.add).
//
//   node subscriber.mjs [--server nats://127.0.0.1:4222] [--new]
import { connect, DeliverPolicy } from 'nats';

const BATCH = 'decisions.v1'; // DecisionBatch's tag (contracts/decisions.py)
const FEEDS = [
  { stream: 'ALERTS', filter: 'vigil.alerts.out' },
  { stream: 'DECISIONS', filter: 'vigil.decisions.>' },
];

function options(argv) {
  // Everything in the streams by default: an ordered consumer starts at sequence 1. (Do
  // not pass DeliverPolicy.All: nats.js sends it with opt_start_seq, which the server
  // refuses, and retries forever; nats lib/jetstream/consumer.js getConsumerOpts.)
  const opts = { server: process.env.NATS_URL || 'nats://127.0.0.1:4222', from: {} };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--server') opts.server = argv[(i += 1)];
    else if (argv[i] === '--new') opts.from = { deliver_policy: DeliverPolicy.New };
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return opts;
}

// The raw JSON text of each element of the array under `key` in a top-level object.
function rawItems(text, key) {
  const items = [];
  let depth = 0;
  let inArray = false;
  let start = -1;
  let lastString = '';
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '"') {
      const from = i;
      for (i += 1; text[i] !== '"'; i += 1) if (text[i] === '\\') i += 1;
      lastString = text.slice(from + 1, i);
      if (inArray && depth === 2 && start < 0) start = from;
    } else if (c === '{' || c === '[') {
      if (inArray && depth === 2 && start < 0) start = i;
      depth += 1;
      if (c === '[' && depth === 2 && lastString === key) inArray = true;
    } else if (c === '}' || c === ']' || c === ',') {
      if (inArray && depth === 2 && start >= 0 && c !== '}') {
        items.push(text.slice(start, i).trim());
        start = -1;
      }
      if (c !== ',') depth -= 1;
      if (c === ']' && depth === 1) inArray = false;
    } else if (inArray && depth === 2 && start < 0 && !/\s/.test(c)) {
      start = i; // a number, true, false or null
    }
  }
  return items;
}

function print(feed, msg, raw, index) {
  const head = { stream: feed.stream, subject: msg.subject, seq: msg.seq };
  if (index !== undefined) head.index = index;
  process.stdout.write(`${JSON.stringify(head).slice(0, -1)},"message":${raw}}\n`);
}

async function follow(js, feed, from) {
  const consumer = await js.consumers.get(feed.stream, { filterSubjects: feed.filter, ...from });
  for await (const msg of await consumer.consume()) {
    const text = msg.string();
    let value;
    try {
      value = JSON.parse(text);
    } catch (err) {
      process.stderr.write(`${feed.stream} #${msg.seq}: not JSON (${err.message}), skipped\n`);
      continue;
    }
    if (value && value.kind === BATCH) rawItems(text, 'messages').forEach((raw, i) => print(feed, msg, raw, i));
    else print(feed, msg, text.trim());
  }
}

const opts = options(process.argv.slice(2));
const nc = await connect({ servers: opts.server, name: 'vigil-node-subscriber' });
const js = nc.jetstream();
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => nc.drain().then(() => process.exit(0)));
await Promise.all(FEEDS.map((feed) => follow(js, feed, opts.from)));
