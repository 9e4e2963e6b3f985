// The demo's app, bundled in nodejs-leak-exporter and written out by `nodejs-leak-exporter demo`
// (plain Node.js, no npm packages). An HTTP service with the three bugs of the typical incident,
// or with their fixes:
//
//   node app.js leaky|fixed DB_PORT
//
// leaky: 1. a 'close' listener added per request to the keep-alive socket, which outlives the
//           request: listeners pile up and Node warns "11 close listeners added to [Socket]";
//        2. a pooled database connection not released when the query throws;
//        3. a module-level Map cache of responses with no eviction.
// fixed: 1. the listener added once to the response; 2. release in finally; 3. a bounded cache.
//
// Each request also renders a large page and keeps the last few in a ring (a debug endpoint
// would show them), so V8's old space fills with garbage and full GCs come every few seconds: the
// sawtooth a busy server has, which the exporter must see through. Prints "ready <port>".
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

// --- the database: a pool of connections to the demo's line-protocol server, used the way
// mysql2's pool is (getConnection, query, release). "GET <id>" answers "OK <row>" or "ERR <why>".
class Connection {
  constructor(pool, socket) {
    this.pool = pool;
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
  release() {
    this.pool.idle.push(this);
  }
}

class Pool {
  constructor(port) {
    this.port = port;
    this.idle = [];
  }
  getConnection() {
    const c = this.idle.pop();
    if (c) return Promise.resolve(c);
    return new Promise((resolve, reject) => {
      const socket = net.connect(this.port, '127.0.0.1', () => resolve(new Connection(this, socket)));
      socket.once('error', reject);
    });
  }
}
const pool = new Pool(dbPort);

// Bug 2: when the query throws, release() is never reached and the connection stays open, lost.
async function getItemLeaky(id) {
  const connection = await pool.getConnection();
  const row = await connection.query('GET ' + id);
  connection.release();
  return row;
}

// Fix 2: the connection goes back to the pool whatever happens.
async function getItemFixed(id) {
  const connection = await pool.getConnection();
  try {
    return await connection.query('GET ' + id);
  } finally {
    connection.release();
  }
}

// --- the response cache. Fix 3: at most `max` entries, each for at most `ttl` ms, least
// recently used out first (what lru-cache does).
class LRUCache {
  constructor({ max, ttl }) {
    this.max = max;
    this.ttl = ttl;
    this.map = new Map();
  }
  get(key) {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    if (Date.now() - e.at > this.ttl) return undefined;
    this.map.set(key, e);
    return e.value;
  }
  set(key, value) {
    this.map.delete(key);
    this.map.set(key, { value, at: Date.now() });
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value);
  }
}
// Bug 3: a plain Map, no size limit, no TTL: every distinct URL stays for ever.
const cache = LEAKY ? new Map() : new LRUCache({ max: 500, ttl: 5 * 60 * 1000 });

// --- rendering: short-lived garbage per request, and a ring of recent pages that lives long
// enough to reach the old space (the page is a large object, which V8 promotes without copying).
const RECENT = 48;
const recent = new Array(RECENT);
const inflight = new Set();
let served = 0;

function render(id, row) {
  const items = [];
  for (let i = 0; i < 60; i++) {
    items.push({ id: id * 100 + i, name: 'item ' + id + '/' + i, price: (id * 7 + i) % 1000, tags: ['t' + (i % 7), row] });
  }
  const page = JSON.stringify({ id, row, items, related: items.map((x) => x.name) });
  const parsed = JSON.parse(page);
  // The response: about 1 KB.
  const body = JSON.stringify({ id, row, count: parsed.items.length, items: parsed.items.slice(0, 8) });
  return { page, body };
}

const server = http.createServer(async (req, res) => {
  const m = /^\/items\/(\d+)(\?|$)/.exec(req.url);
  if (!m) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  served += 1;
  const n = served;
  const id = Number(m[1]);
  inflight.add(n);
  const done = () => inflight.delete(n);
  if (LEAKY) {
    // Bug 1: the socket outlives the request (keep-alive); each request adds one more listener
    // to it, which runs, and lets go of what it holds, only when the connection closes.
    req.socket.on('close', done);
  } else {
    // Fix 1: on the response, once: it goes with the request.
    res.once('close', done);
  }
  let body = cache.get(req.url);
  if (body === undefined) {
    let row;
    try {
      row = await (LEAKY ? getItemLeaky(id) : getItemFixed(id));
    } catch (e) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('database error\n');
      return;
    }
    const page = render(id, row);
    recent[n % RECENT] = { url: req.url, at: Date.now(), size: page.page.length, template: new Array(50 * 1024).fill(id) };
    body = page.body;
    cache.set(req.url, body);
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
// Clients keep their connections; so does the server.
server.keepAliveTimeout = 60 * 1000;

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`ready ${server.address().port}\n`);
});
