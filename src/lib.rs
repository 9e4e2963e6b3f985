//! nodejs-leak-exporter: finds memory leaks in running Node.js processes from the outside.
//!
//! Reading (`discovery`, `collect`), sampling (`sampler`, `target`) and exposing (`exposition`,
//! `http`) are kept apart: the sampler writes snapshots, the HTTP side only serves the latest.

pub mod analysis;
pub mod analyze;
pub mod app;
pub mod attribution;
pub mod cli;
pub mod collect;
pub mod config;
pub mod connector;
pub mod demo;
pub mod discovery;
pub mod exposition;
pub mod http;
pub mod leak;
pub mod otlp;
pub mod plot;
pub mod procstat;
pub mod sampler;
pub mod snapshot;
pub mod target;
pub mod trace;
pub mod web;
