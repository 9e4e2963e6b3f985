'use strict';
// A Prometheus-like scraper for the prom-client conditions of run.sh: GET URL every PERIOD_MS
// over one keep-alive connection (as Prometheus does), one at a time (a scrape that is still
// running when the next is due delays it). Prints one line per finished scrape:
// "<seconds since start> <http status> <bytes>".
//
//   node scraper.js http://127.0.0.1:PORT/metrics 250
const http = require('node:http');

const [url, periodArg] = process.argv.slice(2);
const period = Number(periodArg);
if (!url || !(period > 0)) {
  process.stderr.write('usage: node scraper.js URL PERIOD_MS\n');
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const t0 = process.hrtime.bigint();
let next = Date.now();

function scrape() {
  const req = http.get(url, { agent, timeout: 10000 }, (res) => {
    let bytes = 0;
    res.on('data', (c) => { bytes += c.length; });
    res.on('end', () => {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      process.stdout.write(`${s.toFixed(3)} ${res.statusCode} ${bytes}\n`);
      schedule();
    });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => {
    process.stdout.write(`${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(3)} 000 0 ${e.message}\n`);
    schedule();
  });
}

function schedule() {
  next += period;
  const now = Date.now();
  if (next < now) next = now;
  setTimeout(scrape, next - now);
}

scrape();
process.on('SIGTERM', () => process.exit(0));
