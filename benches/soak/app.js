// A small Node.js app for the soak benchmark (benches/soak.sh). Says it is up (one line on
// stdout, so the benchmark can wait for it instead of sleeping), then:
//   (no option)    does nothing until it is killed, like benches/fixtures/idle.js;
//   --http         serves HTTP on a random loopback port and requests itself every 2 s over a
//                  keep-alive connection, so it holds sockets and allocates a little;
//   --life=SECONDS exits on its own after SECONDS (the started-and-stopped processes), so none
//                  outlives the benchmark by more than that even if the benchmark is killed.
// It holds nothing it does not release: a healthy process, not a leaking one.
'use strict';
const http = require('http');

const args = process.argv.slice(2);
const life = Number((args.find((a) => a.startsWith('--life=')) || '--life=0').slice(7));
if (life > 0) setTimeout(() => process.exit(0), life * 1000);

if (args.includes('--http')) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const server = http.createServer((req, res) => {
    const body = JSON.stringify({ pid: process.pid, at: Date.now(), items: new Array(16).fill('x') });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    setInterval(() => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => res.resume())
        .on('error', () => {});
    }, 2000);
    process.stdout.write(`ready ${process.pid}\n`);
  });
} else {
  setInterval(() => {}, 1 << 30);
  process.stdout.write(`ready ${process.pid}\n`);
}
