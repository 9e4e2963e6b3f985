//! What each inspector call may cost: the largest reply the exporter accepts and how long it
//! waits for it, per protocol method (and per expression, for `Runtime.evaluate`), plus the events
//! it reads. The session enforces them; this module only owns the numbers.
//!
//! A reply over its call's cap, an event over its cap, or any text that is not a protocol message
//! is a `protocol` error that ends the session (it reconnects with the usual backoff): the peer is
//! not what it claims. The WebSocket's frame and message cap is the largest cap below
//! ([`MAX_FRAME`]), checked from a frame's header before its payload is read, so no frame larger
//! than anything the exporter asks for is ever buffered. Events the exporter does not read are
//! dropped without parsing their parameters.
//!
//! The large calls do not go through this session, so its frames stay small: the sampling
//! profile (`HeapProfiler.getSamplingProfile`, megabytes) is read on a session of its own with its
//! own caps (`crate::attribution::cdp`), and heap snapshots, streamed as
//! `HeapProfiler.addHeapSnapshotChunk` events of about 100 KiB, on another
//! (`crate::snapshot::capture`). A call added here gets an entry in [`Call`] with its cap and, if
//! it may take long, its own timeout; [`MAX_FRAME`] follows the largest cap.

use std::time::Duration;

/// A call the exporter makes on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `Runtime.evaluate` of `process.pid`: whose inspector this is, before anything else.
    WhosePid,
    /// `NodeRuntime.notifyWhenWaitingForDisconnect`: never hold an exiting app.
    NotifyDisconnect,
    /// `Runtime.addBinding` of the warning binding.
    AddBinding,
    /// `Runtime.evaluate` of `install.js`.
    Install,
    /// `Runtime.evaluate` of `sample.js`, at every sample.
    Sample,
    /// `Runtime.evaluate` of `uninstall.js`, at shutdown.
    Uninstall,
    /// `Runtime.removeBinding`, at shutdown.
    RemoveBinding,
}

/// A small call's reply: an acknowledgement, a number, a short string, or an exception whose
/// text is cut to 200 characters anyway.
const SMALL: usize = 16 << 10;

/// The sample's reply at its largest: install.js keeps at most 64 warning keys (and `other`) of
/// three strings of at most 120 UTF-16 units each; escaped twice (JSON.stringify, then the protocol
/// message) a unit costs at most 7 bytes: 65 × 360 × 7 ≈ 160 KiB. A healthy app's is about 2 KiB.
const SAMPLE: usize = 256 << 10;

impl Call {
    pub const ALL: [Call; 7] = [
        Call::WhosePid,
        Call::NotifyDisconnect,
        Call::AddBinding,
        Call::Install,
        Call::Sample,
        Call::Uninstall,
        Call::RemoveBinding,
    ];

    /// The protocol method.
    pub const fn method(self) -> &'static str {
        match self {
            Call::WhosePid | Call::Install | Call::Sample | Call::Uninstall => "Runtime.evaluate",
            Call::NotifyDisconnect => "NodeRuntime.notifyWhenWaitingForDisconnect",
            Call::AddBinding => "Runtime.addBinding",
            Call::RemoveBinding => "Runtime.removeBinding",
        }
    }

    /// The largest reply accepted, in bytes of the whole protocol message.
    pub const fn max_reply(self) -> usize {
        match self {
            Call::Sample => SAMPLE,
            Call::WhosePid
            | Call::NotifyDisconnect
            | Call::AddBinding
            | Call::Install
            | Call::Uninstall
            | Call::RemoveBinding => SMALL,
        }
    }

    /// How long the exporter waits for the reply. Every call made today is small and answered by
    /// the app's main thread in microseconds to milliseconds, so each gets the configured call
    /// timeout (`--inspector.call-timeout`).
    pub fn timeout(self, call_timeout: Duration) -> Duration {
        call_timeout
    }
}

/// The events the exporter reads, with the largest message accepted for each; `None` for every
/// other event, which is dropped unread.
pub fn event_cap(method: &str) -> Option<usize> {
    match method {
        // A warning key (three strings of at most 120 UTF-16 units, escaped) and a context id.
        "Runtime.bindingCalled" => Some(8 << 10),
        "NodeRuntime.waitingForDisconnect" => Some(1 << 10),
        _ => None,
    }
}

/// The WebSocket's frame and message cap: the largest reply any call may have.
pub const MAX_FRAME: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < Call::ALL.len() {
        if Call::ALL[i].max_reply() > max {
            max = Call::ALL[i].max_reply();
        }
        i += 1;
    }
    max
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_cap_is_the_largest_call_cap() {
        assert_eq!(MAX_FRAME, SAMPLE);
        assert!(Call::ALL.iter().all(|c| c.max_reply() <= MAX_FRAME));
        assert!(["Runtime.bindingCalled", "NodeRuntime.waitingForDisconnect"]
            .iter()
            .all(|m| event_cap(m).is_some_and(|cap| cap <= MAX_FRAME)));
        assert_eq!(event_cap("Runtime.consoleAPICalled"), None);
    }

    #[test]
    fn the_worst_sample_fits_its_cap() {
        // 65 keys of three 120-unit strings, each unit escaped as \\u0001 (7 bytes), plus the rest.
        let worst = 65 * 3 * 120 * 7 + 4096;
        assert!(worst < Call::Sample.max_reply(), "{worst}");
    }
}
