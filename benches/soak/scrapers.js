// Concurrent scrapers for the soak benchmark (benches/soak.sh): N scrapers, each GETs URL once
// every PERIOD milliseconds over its own keep-alive connection (as Prometheus does), staggered
// by PERIOD/N; a scrape that is late starts at once, one that would overlap the next is skipped
// (as Prometheus does). Latency is from sending the request to the last byte of the body.
//
//   node scrapers.js N PERIOD_MS URL OUTFILE
//
// OUTFILE gets one line per scrape: `UNIX_START LATENCY_MS BYTES STATUS SCRAPER` (STATUS 0 for a
// failed request, with the latency up to the failure). Runs until SIGTERM or SIGINT.
'use strict';
const http = require('http');
const fs = require('fs');

const n = Number(process.argv[2]);
const period = Number(process.argv[3]);
const url = new URL(process.argv[4]);
const out = fs.createWriteStream(process.argv[5], { flags: 'a' });
if (!(n > 0 && period > 0)) {
  console.error('usage: node scrapers.js N PERIOD_MS URL OUTFILE');
  process.exit(2);
}

let stopping = false;
const t0 = Date.now() + 100;

function scraper(id) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let k = 0;
  const schedule = () => {
    if (stopping) return;
    const next = t0 + (id * period) / n + k * period;
    k++;
    setTimeout(scrape, Math.max(0, next - Date.now()));
  };
  const scrape = () => {
    if (stopping) return;
    const started = Date.now();
    const t = process.hrtime.bigint();
    let bytes = 0;
    let done = false;
    const finish = (status) => {
      if (done) return;
      done = true;
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      out.write(`${(started / 1000).toFixed(3)} ${ms.toFixed(3)} ${bytes} ${status} ${id}\n`);
      // Skip the slots this scrape overran.
      while (t0 + (id * period) / n + k * period < Date.now()) k++;
      schedule();
    };
    const req = http.get(
      { host: url.hostname, port: url.port, path: url.pathname + url.search, agent, timeout: 10000 },
      (res) => {
        res.on('data', (chunk) => (bytes += chunk.length));
        res.on('end', () => finish(res.statusCode));
        res.on('error', () => finish(0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => finish(0));
  };
  schedule();
}

for (let i = 0; i < n; i++) scraper(i);
const stop = () => {
  stopping = true;
  out.end(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
