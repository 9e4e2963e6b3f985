// The demo's bundled app (written out and run by `nodejs-leak-exporter demo`; no npm packages).
// An HTTP service with the three bugs of the typical incident, or their fixes:
//
//   node app.js leaky|fixed DB_PORT
//
// leaky: 1. a 'close' listener added per request to the keep-alive socket, which outlives the
//           request (Node warns: "11 close listeners added to [Socket]");
//        2. a pooled database connection not released when the query fails;
//        3. a module-level Map cache of rendered responses with no eviction.
// fixed: 1. the listener goes on the response, once; 2. release in finally; 3. a bounded cache.
//
// Each request also renders a large page and keeps the last few in a ring (as a debug endpoint
// would), so that V8's old space fills with garbage and full GCs come every few seconds: what a
// busy server does over hours, in a demo's minutes. Prints "ready <port>" once serving.
'use strict';
const http = require('http');
const net = require('net');

const mode = process.argv[2];
const dbPort = Number(process.argv[3]);
if ((mode !== 'leaky' && mode !== 'fixed') || !(dbPort > 0)) {
  process.stderr.write('usage: node app.js leaky|fixed DB_PORT\n');
  process.exit(2);
}
const LEAKY = mode === 'leaky';

// --- the database: a pool of connections to the demo's line-protocol server.
// "GET <id>\n" answers "OK <row>\n" or "ERR <message>\n".
class Connection {
  constructor(socket) {
    this.socket = socket;
    this.buffered = '';
    this.waiting = null;
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      this.buffered += chunk;
      let nl;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const w = this.waiting;
        this.waiting = null;
        if (!w) continue;
        if (line.startsWith('OK ')) w.resolve(line.slice(3));
        else w.reject(new Error('query failed: ' + line.replace(/^ERR /, '')));
      }
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }
  fail(e) {
    const w = this.waiting;
    this.waiting = null;
    if (w) w.reject(e);
  }
  query(text) {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(text + '\n');
    });
  }
}

class Pool {
  constructor(port) {
    this.port = port;
    this.idle = [];
    this.open = 0;
  }
  getConnection() {
    const c = this.idle.pop();
    if (c) return Promise.resolve(c);
    return new Promise((resolve, reject) => {
      const socket = net.connect(this.port, '127.0.0.1', () => {
        this.open += 1;
        resolve(new Connection(socket));
      });
      socket.once('error', reject);
    });
  }
  release(c) {
    this.idle.push(c);
  }
}
const pool = new Pool(dbPort);

async function getItemLeaky(id) {
  const connection = await pool.getConnection();
  const row = await connection.query('GET ' + id); // throws here sometimes
  connection.release(); // never reached when it throws: the connection is lost, open
  return row;
}

async function getItemFixed(id) {
  const connection = await pool.getConnection();
  try {
    return await connection.query('GET ' + id);
  } finally {
    pool.release(connection);
  }
}
Connection.prototype.release = function () {
  pool.release(this);
};

// --- the response cache.
class BoundedCache {
  constructor(max, ttlMs) {
    this.max = max;
    this.ttlMs = ttlMs;
    this.map = new Map();
  }
  get(key) {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    if (Date.now() - e.at > this.ttlMs) return undefined;
    this.map.set(key, e); // most recently used last
    return e.value;
  }
  set(key, value) {
    this.map.delete(key);
    this.map.set(key, { value, at: Date.now() });
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value);
  }
}
const cache = LEAKY ? new Map() : new BoundedCache(500, 5 * 60 * 1000);

// --- rendering: short-lived garbage, and a ring of recent pages that survives young GCs.
const RECENT = 48;
const recent = new Array(RECENT);
let served = 0;
const inflight = new Set();

function render(id, row) {
  const items = [];
  for (let i = 0; i < 60; i++) {
    items.push({ id: id * 100 + i, name: 'item ' + id + '/' + i, price: (id * 7 + i) % 1000, tags: ['t' + (i % 7), row] });
  }
  const page = JSON.stringify({ id, row, items, related: items.map((x) => x.name) });
  const json = JSON.parse(page);
  return { page, summary: JSON.stringify({ id, row, count: json.items.length, first: json.items[0] }) };
}

function padded(id) {
  // A page with its template: ~200 KB, a large object V8 promotes without copying.
  return new Array(50 * 1024).fill(id);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const m = /^\/items\/(\d+)$/.exec(url.pathname);
  if (!m) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  served += 1;
  const n = served;
  const id = Number(m[1]);
  const requestId = n;
  inflight.add(requestId);
  const done = () => inflight.delete(requestId);
  if (LEAKY) {
    // Bug 1: the socket is kept alive across requests; every request adds a listener to it,
    // which runs (and lets go of what it holds) only when the connection closes.
    req.socket.on('close', done);
  } else {
    res.once('close', done);
  }
  const key = req.url;
  let body = cache.get(key);
  if (body === undefined) {
    let row;
    try {
      row = await (LEAKY ? getItemLeaky(id) : getItemFixed(id));
    } catch (e) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('database error\n');
      return;
    }
    const { page, summary } = render(id, row);
    recent[n % RECENT] = { url: req.url, at: Date.now(), page: padded(id), size: page.length };
    body = summary;
    // Bug 3 (leaky): every distinct URL stays in the Map for ever.
    cache.set(key, body);
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 60 * 1000;

if (process.env.DEMO_DEBUG) {
  const { PerformanceObserver, constants } = require('perf_hooks');
  let majors = 0;
  let floor = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) { majors += 1; floor = process.memoryUsage().heapUsed; if (process.env.DEMO_DEBUG === '2') process.stderr.write(`F ${mode} ${process.uptime().toFixed(1)} ${floor} ${require('v8').getHeapSpaceStatistics().map((x) => x.space_name.replace('_space', '') + '=' + (x.space_used_size / 1024).toFixed(0)).join(' ')}\n`); }
  }).observe({ entryTypes: ['gc'] });
  setInterval(() => {
    const m = process.memoryUsage();
    process.stderr.write(`${mode} t=${process.uptime().toFixed(0)} served=${served} majors=${majors} floor=${(floor / 1048576).toFixed(1)} heap=${(m.heapUsed / 1048576).toFixed(1)} rss=${(m.rss / 1048576).toFixed(1)} pool=${pool.open}\n`);
  }, 5000).unref();
}

if (process.env.DEMO_SNAP) {
  for (const at of [40, 160]) setTimeout(() => { global.gc && global.gc(); require('v8').writeHeapSnapshot(`/tmp/demoexp/${mode}-${at}.heapsnapshot`); }, at * 1000);
}
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`ready ${server.address().port}\n`);
});
