// The three-snapshot leak set with each id's class in B and in C, read with memlab's own parser
// (installed by run.sh under target/memlab): an id whose class changes is not one object, and
// V8 giving ids to other objects is what makes memlab and `diff A B C` disagree.
//   node --max-old-space-size=16384 benches/snapshot/ids.js A B C   (about 4 GiB for 1 GiB files)
const path = require('path');
const lib = path.resolve(__dirname, '../../target/memlab/node_modules/@memlab/core/dist/lib');
// The package first: its modules import each other in an order that needs it.
require(lib + '/../index');
const SL = require(lib + '/StringLoader').default;
async function load(file) {
  const nodes = await SL.readFileAndExtractTypedArray(file, 'nodes');
  const rest = JSON.parse(await SL.readFileAndExcludeTypedArray(file, ['nodes', 'edges', 'locations']));
  const m = rest.snapshot.meta, w = m.node_fields.length;
  const [ti, ni, ii] = ['type', 'name', 'id'].map(f => m.node_fields.indexOf(f));
  const types = m.node_types[ti];
  const cls = new Map();
  for (let k = 0; k < nodes.length; k += w) {
    const t = types[nodes[k + ti]];
    const name = (t === 'object' || t === 'native') ? rest.strings[nodes[k + ni]] : '(' + t + ')';
    cls.set(nodes[k + ii], name);
  }
  return cls;
}
(async () => {
  const [a, b, c] = process.argv.slice(2);
  const A = await load(a); console.error('A', A.size);
  const B = await load(b); console.error('B', B.size);
  const C = await load(c); console.error('C', C.size);
  const same = new Map(), changed = new Map();
  let n = 0;
  for (const [id, cb] of B) {
    if (A.has(id) || !C.has(id)) continue;
    n++;
    const cc = C.get(id);
    const m = cb === cc ? same : changed;
    const k = cb === cc ? cb : cb + ' -> ' + cc;
    m.set(k, (m.get(k) || 0) + 1);
  }
  const top = m => [...m].sort((x, y) => y[1] - x[1]).slice(0, 12);
  console.log('leak set', n);
  console.log('same class in B and C', top(same));
  console.log('class changed B -> C', top(changed));
  // Ids of C that were LeakedRecord in C and new since A: were they in B?
  let lrC = 0, lrInB = 0, lrInBSame = 0;
  for (const [id, cc] of C) if (cc === 'LeakedRecord' && !A.has(id)) { lrC++; if (B.has(id)) { lrInB++; if (B.get(id) === cc) lrInBSame++; } }
  console.log('LeakedRecord new in C', lrC, 'of which id in B', lrInB, 'same class', lrInBSame);
})();
