// A heap of a chosen size for the snapshot benchmark: `items=N` long-lived records (an object
// with a string, a small array, a nested object and a closure each: about ten snapshot nodes),
// plus a leak that grows by `leak=M` records of its own class every second, held by a Map.
// Prints 'ready' once built.
const opts = { items: 100000, leak: 2000 };
for (const arg of process.argv.slice(2)) {
  const [k, v] = arg.split('=');
  opts[k] = Number(v);
}
class Item {
  constructor(i) {
    this.id = i;
    this.name = 'item-' + i;
    this.tags = ['t' + (i % 13), 't' + (i % 7)];
    this.meta = { created: i * 1000, owner: { user: 'u' + (i % 1000) } };
    this.onChange = () => this.id;
  }
}
class LeakedRecord {
  constructor(i) {
    this.i = i;
    this.payload = new Array(16).fill(i);
  }
}
const items = [];
for (let i = 0; i < opts.items; i++) items.push(new Item(i));
globalThis.benchItems = items;
const leaky = new Map();
let n = 0;
setInterval(() => {
  for (let j = 0; j < opts.leak; j++, n++) leaky.set('k' + n, new LeakedRecord(n));
  // Churn: as much again, dropped at once.
  const tmp = [];
  for (let j = 0; j < opts.leak; j++) tmp.push(new Item(-j));
}, 1000);
process.stdout.write('ready\n');
