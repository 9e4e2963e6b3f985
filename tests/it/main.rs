//! Integration tests, one binary so the crate links once. Real Node.js processes, real /proc,
//! real promtool; a fixture /proc tree for the cases a live system cannot stage.

mod util;

mod alerts;
mod analyze;
mod attribution;
mod corpus;
mod dashboards;
mod demo;
mod discovery;
mod faults;
mod fixture_proc;
mod fleet;
mod helm;
mod inspector;
mod kubernetes;
mod leak;
mod logs;
mod netns;
mod otlp;
mod privileges;
mod prom;
mod snapshot;
mod snapshot_api;
mod systemd;
mod web;
