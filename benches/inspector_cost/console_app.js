'use strict';
// The app of console_memory.sh: waits for SIGUSR2, then logs N console.log messages of about
// 1 KiB and measures its memory after a forced GC three times: before logging, right after it
// ("burst", 200 ms later) and after IDLE_MS of idling ("idle", once V8's memory reducer has
// shrunk the young generation again). Writes them to OUT (JSON), then idles until killed.
// Run with --expose-gc; stdout goes to /dev/null (console.log is then synchronous).
//
//   node --expose-gc [--inspect=127.0.0.1:0] console_app.js N MODE OUT [IDLE_MS=15000]
//
// MODE string: each message is one fresh ~1 KiB string (a JSON log line), console.log(line).
// MODE object: each message is a format string and a fresh object of ~1 KiB of heap,
//              console.log('order %d', id, order) (what loggers of objects do).
// V8 keeps the arguments of recent console messages (V8ConsoleMessageStorage, up to 1000) for
// inspector clients that attach later, when an inspector is active; this app shows what that
// retains.
const fs = require('node:fs');
const v8 = require('node:v8');

const [nArg, mode, out, idleArg] = process.argv.slice(2);
const N = Number(nArg);
const IDLE_MS = Number(idleArg || 15000);
if (!(N > 0) || !['string', 'object'].includes(mode) || !out || typeof gc !== 'function') {
  process.stderr.write('usage: node --expose-gc console_app.js N string|object OUT\n');
  process.exit(2);
}

const PAD = 'x'.repeat(900);
function message(i) {
  if (mode === 'string') {
    // A flat, distinct string of ~1 KiB per message (not a cons string over a shared one).
    return [JSON.stringify({ level: 'info', time: Date.now(), msg: 'request handled', reqId: i, pad: PAD })];
  }
  const items = [];
  for (let k = 0; k < 6; k++) items.push({ sku: `SKU-${i}-${k}`, name: `Item ${k} of order ${i}`, qty: k + 1, price: i * 0.01 + k });
  return ['order %d', i, { id: i, customer: `customer-${i % 1000}`, createdAt: new Date(), items }];
}

function snapshot() {
  gc();
  gc();
  const m = process.memoryUsage();
  const h = v8.getHeapStatistics();
  return {
    rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external,
    usedHeapSize: h.used_heap_size, mallocedMemory: h.malloced_memory,
  };
}

let running = false;
process.on('SIGUSR2', () => {
  if (running) return;
  running = true;
  const before = snapshot();
  for (let i = 0; i < N; i++) console.log(...message(i));
  // Let anything the inspector queued run, then measure after a full GC.
  setTimeout(() => {
    const burst = snapshot();
    setTimeout(() => {
      const idle = snapshot();
      fs.writeFileSync(out, JSON.stringify({ pid: process.pid, n: N, mode, before, burst, idle }) + '\n');
    }, IDLE_MS);
  }, 200);
});
setInterval(() => {}, 1 << 30); // idle until killed
process.on('SIGTERM', () => process.exit(0));
fs.writeFileSync(`${out}.ready`, `${process.pid}\n`);
