// Starts and stops Node.js processes for the soak benchmark (benches/soak.sh): COUNT processes of
// benches/soak/app.js, started evenly over DURATION seconds, each living a random time between
// MIN and MAX seconds (it exits on its own); every 4th serves HTTP, every 10th also opens an
// inspector on a random loopback port (--inspect=127.0.0.1:0), so the exporter attaches to
// processes that then go away. Lifetimes come from a fixed seed: every run starts the same mix.
//
//   node churn.js COUNT DURATION MIN MAX LOGFILE
//
// LOGFILE gets one line per event: `start UNIX PID LIFE INSPECT`, `exit UNIX PID CODE SIGNAL`.
// On SIGTERM or SIGINT it kills the children it still has and exits.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');

const [count, duration, minLife, maxLife] = process.argv.slice(2, 6).map(Number);
const logFile = process.argv[6];
if (!(count > 0 && duration > 0 && maxLife >= minLife && minLife > 0 && logFile)) {
  console.error('usage: node churn.js COUNT DURATION MIN MAX LOGFILE');
  process.exit(2);
}
const app = path.join(__dirname, 'app.js');
const log = fs.openSync(logFile, 'a');
const write = (line) => fs.writeSync(log, `${line}\n`);
const now = () => (Date.now() / 1000).toFixed(3);

// mulberry32: a small deterministic PRNG.
let seed = 0x50a4c0de;
function random() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const children = new Map();
let started = 0;
let stopping = false;
const t0 = Date.now();

function startOne(i) {
  const life = Math.round((minLife + random() * (maxLife - minLife)) * 10) / 10;
  const inspect = i % 10 === 9;
  const args = [];
  if (inspect) args.push('--inspect=127.0.0.1:0');
  args.push(app, `--life=${life}`);
  if (i % 4 === 3) args.push('--http');
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  started++;
  if (child.pid === undefined) {
    write(`error ${now()} - spawn failed`);
    return;
  }
  children.set(child.pid, child);
  write(`start ${now()} ${child.pid} ${life} ${inspect ? 1 : 0}`);
  child.on('exit', (code, signal) => {
    children.delete(child.pid);
    write(`exit ${now()} ${child.pid} ${code} ${signal}`);
  });
}

function tick() {
  if (stopping) return;
  // Catch up if the event loop was late, so the rate stays even over the run.
  const due = Math.min(count, Math.floor(((Date.now() - t0) / 1000 / duration) * count) + 1);
  while (started < due) startOne(started);
  if (started < count) {
    const next = t0 + (started / count) * duration * 1000;
    setTimeout(tick, Math.max(1, next - Date.now()));
  }
}

function stop() {
  if (stopping) return;
  stopping = true;
  for (const child of children.values()) child.kill('SIGKILL');
  write(`stopped ${now()} started=${started} alive=${children.size}`);
  setTimeout(() => process.exit(0), 200);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
tick();
// Keep running after the last start, until told to stop.
setInterval(() => {}, 1 << 30);
