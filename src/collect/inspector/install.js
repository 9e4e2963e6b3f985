// Installed once per process by nodejs-leak-exporter over the inspector (Runtime.evaluate).
// It keeps bounded counters that the exporter reads at each sample: warnings by name (and by event
// and emitter type for MaxListenersExceededWarning) and GC pauses by kind. It adds one 'warning'
// listener and one PerformanceObserver, neither of which holds the event loop open or changes what
// the app does, and it is idempotent: a second install (a reconnect, a second exporter) finds the
// first and only records its owner. `uninstall.js` removes it when the last owner goes.
(() => {
  const KEY = Symbol.for('nodejs-leak-exporter');
  const OWNER = __OWNER__;
  const existing = globalThis[KEY];
  if (existing && existing.v === 1) {
    if (existing.owners.size < 16) existing.owners.add(OWNER);
    return 'present';
  }
  const load = (name) =>
    typeof process.getBuiltinModule === 'function' ? process.getBuiltinModule(name) : require(name);
  const v8 = load('v8');
  const perf = load('perf_hooks');
  const LIMIT = 64;
  // Every string the exporter reads back: at most 120 UTF-16 units, no NUL (it separates a key's
  // parts), no lone surrogate (a character cut in two, which JSON parsers refuse once escaped).
  const BAD = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
  const text = (x) => {
    try { return String(x).slice(0, 120).replace(BAD, '\ufffd'); } catch { return '?'; }
  };
  const state = { v: 1, v8, owners: new Set([OWNER]), warnings: new Map(), gc: {}, major: null, majors: 0 };
  state.onWarning = (w) => {
    try {
      const name = text((w && w.name) || 'Warning');
      let event = '';
      let emitter = '';
      if (name === 'MaxListenersExceededWarning') {
        // EventEmitter warnings carry `emitter`, EventTarget ones (AbortSignal...) carry `target`.
        event = text(w.type);
        const source = w.emitter || w.target;
        emitter = source && source.constructor ? text(source.constructor.name) : '';
      }
      let key = name + '\u0000' + event + '\u0000' + emitter;
      if (!state.warnings.has(key) && state.warnings.size >= LIMIT) key = 'other\u0000\u0000';
      state.warnings.set(key, (state.warnings.get(key) || 0) + 1);
      const notify = globalThis.__nodejsLeakExporterWarning;
      if (typeof notify === 'function') notify(key);
    } catch {}
  };
  process.on('warning', state.onWarning);
  const c = perf.constants;
  const kinds = {
    [c.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [c.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [c.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [c.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  const BOUNDS = [0.001, 0.01, 0.1, 1, 2, 5];
  state.observer = new perf.PerformanceObserver((list) => {
    try {
      let major = false;
      for (const e of list.getEntries()) {
        const kind = kinds[e.detail ? e.detail.kind : e.kind] || 'other';
        const h = state.gc[kind] || (state.gc[kind] = { b: BOUNDS.map(() => 0), n: 0, s: 0 });
        const seconds = e.duration / 1000;
        h.n += 1;
        h.s += seconds;
        for (let i = 0; i < BOUNDS.length; i++) if (seconds <= BOUNDS[i]) h.b[i] += 1;
        if (kind === 'major') major = true;
      }
      // The heap right after a full GC: the floor a leak raises.
      if (major) state.major = [Date.now(), v8.getHeapStatistics().used_heap_size, ++state.majors];
    } catch {}
  });
  state.observer.observe({ entryTypes: ['gc'] });
  Object.defineProperty(globalThis, KEY, { value: state, configurable: true, enumerable: false, writable: false });
  return 'installed';
})()
