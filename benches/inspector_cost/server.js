'use strict';
// The watched app of benches/inspector_cost/run.sh: an HTTP server that does a bit of realistic
// work per request (builds a small API response, an order with eight line items, and answers it
// as ~1 KiB of JSON).
//
//   node --inspect=127.0.0.1:0 server.js          prints "listening PORT" on stdout
//   PROM_CLIENT=1 node ... server.js               also prom-client's collectDefaultMetrics(),
//                                                  served at /metrics like an app does
//
// Control requests (sent by run.sh, not by the load):
//   /__reset   starts (or restarts) an event-loop delay monitor, resolution 10 ms
//   /__stats   stops it and answers its percentiles in nanoseconds, as JSON
// The monitor only runs between the two, so the idle CPU windows of run.sh do not include it.
const http = require('node:http');
const { monitorEventLoopDelay } = require('node:perf_hooks');

let register = null;
if (process.env.PROM_CLIENT === '1') {
  const client = require('prom-client');
  // prom-client 15: no timer. It keeps an event-loop delay histogram (resolution 10 ms) and a GC
  // PerformanceObserver running, and reads everything else when /metrics is scraped.
  client.collectDefaultMetrics();
  register = client.register;
}

const CATEGORIES = ['books', 'music', 'garden', 'tools', 'toys', 'games', 'food', 'sports'];
let served = 0;

// A small API response: an order with its customer and a few line items.
function handle(url) {
  served += 1;
  const id = served;
  const items = [];
  for (let k = 0; k < 8; k++) {
    const price = ((id * 7 + k * 13) % 5000) / 100;
    items.push({
      sku: `SKU-${(id + k) % 100000}`,
      name: `Item ${k} of order ${id}`,
      category: CATEGORIES[(id + k) % CATEGORIES.length],
      quantity: 1 + ((id + k) % 3),
      price,
      tags: k % 2 ? ['sale', 'new'] : ['stock'],
    });
  }
  const total = items.reduce((s, it) => s + it.price * it.quantity, 0);
  return {
    id,
    path: url,
    createdAt: new Date().toISOString(),
    customer: { id: id % 1000, name: `Customer ${id % 1000}`, email: `c${id % 1000}@example.test` },
    items,
    total: Math.round(total * 100) / 100,
    currency: 'EUR',
  };
}

let eld = null;
const server = http.createServer((req, res) => {
  if (req.url === '/__reset') {
    if (eld) eld.disable();
    eld = monitorEventLoopDelay({ resolution: 10 });
    eld.enable();
    res.end('ok\n');
    return;
  }
  if (req.url === '/__stats') {
    const h = eld;
    if (h) h.disable();
    const body = JSON.stringify(h ? {
      count: h.count, min: h.min, mean: h.mean, max: h.max,
      p50: h.percentile(50), p90: h.percentile(90), p99: h.percentile(99), p999: h.percentile(99.9),
    } : {});
    res.setHeader('Content-Type', 'application/json');
    res.end(body);
    return;
  }
  if (register && req.url === '/metrics') {
    register.metrics().then((text) => {
      res.setHeader('Content-Type', register.contentType);
      res.end(text);
    }, (e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
    return;
  }
  const body = JSON.stringify(handle(req.url));
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
