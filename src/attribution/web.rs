//! The HTTP side of attribution: `GET /api/v1/profile?pid=N` (the run's report as JSON, or its
//! newest profile with `format=pprof`), `POST /api/v1/profile?pid=N&duration=60s` (profile on
//! demand), and `/profile?pid=N`, the same report as a page. All of it needs the attribution
//! collector (`--collector.attribution`): without it nothing samples, and the answers say so.
//! These paths are behind the endpoint's authentication like every other but the probes.

use std::time::Duration;

use super::manager::{self, Manager, RequestError};

/// An answer, for the HTTP layer to send as it is.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes() }
    }

    fn json(status: u16, value: &impl serde::Serialize) -> Reply {
        let body = serde_json::to_vec_pretty(value).unwrap_or_default();
        Reply { status, content_type: "application/json", body }
    }
}

fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The manager and the pid asked for, or the answer that says why not.
fn manager_and_pid(query: Option<&str>) -> Result<(std::sync::Arc<Manager>, i32), Reply> {
    let manager = manager::current().ok_or_else(|| {
        Reply::text(404, "allocation sites are not profiled: start the exporter with --collector.attribution\n")
    })?;
    let pid = param(query, "pid")
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| Reply::text(400, "pid=N is required\n"))?;
    Ok((manager, pid))
}

/// `GET /api/v1/profile?pid=N[&format=json|pprof]`.
pub fn get(query: Option<&str>) -> Reply {
    let (manager, pid) = match manager_and_pid(query) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    match param(query, "format").unwrap_or("json") {
        "json" => match manager.report(pid) {
            Some(state) => Reply::json(200, &state),
            None => Reply::text(404, format!("no profile of pid {pid}: it is not leaking and none was asked for\n")),
        },
        "pprof" => match manager.pprof(pid) {
            Some(bytes) => Reply { status: 200, content_type: "application/octet-stream", body: bytes },
            None => Reply::text(404, format!("no profile of pid {pid} yet\n")),
        },
        other => Reply::text(400, format!("unknown format {other:?}: json or pprof\n")),
    }
}

/// `POST /api/v1/profile?pid=N[&duration=60s]`: profiles a watched process for a while.
pub fn post(query: Option<&str>) -> Reply {
    let (manager, pid) = match manager_and_pid(query) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let duration = match param(query, "duration").map(crate::config::parse_duration) {
        None => Duration::from_secs(60),
        Some(Ok(d)) => d,
        Some(Err(e)) => return Reply::text(400, format!("{e}\n")),
    };
    let Some(key) = manager.key_of(pid) else {
        return Reply::text(404, format!("pid {pid} is not a watched Node.js process\n"));
    };
    match manager.request(key, duration) {
        Ok(()) => Reply::text(
            202,
            format!("profiling pid {pid} for {}s: GET /api/v1/profile?pid={pid}\n", duration.as_secs_f64()),
        ),
        Err(e @ RequestError::Running(_)) => Reply::text(409, format!("{e}\n")),
        Err(e @ RequestError::Duration(_)) => Reply::text(400, format!("{e}\n")),
    }
}

/// `/profile?pid=N`: the report as a page.
pub fn page(query: Option<&str>) -> Reply {
    let (manager, pid) = match manager_and_pid(query) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let Some(state) = manager.report(pid) else {
        return Reply::text(404, format!("no profile of pid {pid}: it is not leaking and none was asked for\n"));
    };
    let status = match &state.status {
        manager::Status::Waiting => "waiting for a turn".to_string(),
        manager::Status::Sampling => "sampling".to_string(),
        manager::Status::Done => "done; sampling stopped".to_string(),
        manager::Status::Failed(why) => format!("failed: {why}; sampling stopped"),
    };
    let report = state.report.as_ref().map(super::cli::render_text).unwrap_or_else(|| "No profile taken yet.\n".into());
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Allocation sites of pid {pid}</title>\
         <style>body{{font-family:sans-serif;margin:1.5em}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>\
         <h1>Allocation sites of pid {pid}</h1><p>{}: {}. <a href=\"/api/v1/profile?pid={pid}\">JSON</a> · \
         <a href=\"/api/v1/profile?pid={pid}&amp;format=pprof\">pprof</a> · <a href=\"/\">all processes</a></p>\
         <pre>{}</pre></body></html>",
        escape(&format!("{:?}", state.trigger).to_lowercase()),
        escape(&status),
        escape(&report)
    );
    Reply { status: 200, content_type: "text/html; charset=utf-8", body: body.into_bytes() }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_from_the_query() {
        assert_eq!(param(Some("pid=12&format=pprof"), "pid"), Some("12"));
        assert_eq!(param(Some("pid=12&format=pprof"), "format"), Some("pprof"));
        assert_eq!(param(Some("pidx=12"), "pid"), None);
        assert_eq!(param(None, "pid"), None);
    }
}
