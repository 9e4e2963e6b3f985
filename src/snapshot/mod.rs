//! Heap snapshots: taking one of a process over its inspector (`capture`, streamed to a `0600`
//! file under a size cap) and comparing snapshots as DevTools' Comparison view does (`diff`),
//! with retained sizes from the dominator tree and retainer paths (`graph`), and memlab's
//! three-snapshot leak definition.
//!
//! The reader (`parse`) streams: no snapshot is ever held whole in memory, only the compact
//! arrays a comparison needs (`model` for a shallow one, `graph` for retained sizes). Snapshots
//! hold the app's secrets: string contents are never kept, shown or logged, only class names,
//! function names and property names.
//!
//! Inside the exporter (`snapshots.dir`), `store` takes snapshots on the runtime into one
//! directory under a count and size cap, and `web` serves them and Alertmanager's webhook, which
//! `forward` passes on to the exporter on the alert's node.

pub mod capture;
pub mod cli;
pub mod diff;
pub mod forward;
pub mod graph;
pub mod model;
pub mod parse;
pub mod store;
pub mod web;
