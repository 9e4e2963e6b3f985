// Removes what install.js added once its last owner (exporter instance) lets go.
(() => {
  const KEY = Symbol.for('nodejs-leak-exporter');
  const s = globalThis[KEY];
  if (!s) return 'absent';
  s.owners.delete(__OWNER__);
  if (s.owners.size > 0) return 'shared';
  try { process.removeListener('warning', s.onWarning); } catch {}
  try { s.observer.disconnect(); } catch {}
  delete globalThis[KEY];
  return 'removed';
})()
