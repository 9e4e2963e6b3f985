// Evaluated at every sample: cheap reads only (no GC, no snapshot), returned as one JSON string.
(() => {
  const s = globalThis[Symbol.for('nodejs-leak-exporter')];
  const v8 = s ? s.v8
    : typeof process.getBuiltinModule === 'function' ? process.getBuiltinModule('v8') : require('v8');
  const h = v8.getHeapStatistics();
  const m = process.memoryUsage();
  const resources = {};
  if (typeof process.getActiveResourcesInfo === 'function') {
    for (const t of process.getActiveResourcesInfo()) resources[t] = (resources[t] || 0) + 1;
  }
  return JSON.stringify({
    v: 1,
    pid: process.pid,
    version: process.version,
    heap: [h.total_heap_size, h.used_heap_size, h.heap_size_limit, m.external, m.arrayBuffers, h.number_of_detached_contexts],
    spaces: v8.getHeapSpaceStatistics().map((x) => [x.space_name, x.space_size, x.space_used_size, x.space_available_size]),
    resources,
    warnings: s ? Array.from(s.warnings, ([k, n]) => [...k.split('\u0000'), n]) : null,
    gc: s ? s.gc : null,
    major: s ? s.major : null,
  });
})()
