//! Parsing Node.js's own lines out of application logs: `MaxListenersExceededWarning` in every
//! form Node.js 18 to 24 prints, any other `(node:PID) SomethingWarning:` line, and the fatal
//! heap-OOM messages. Works on bytes (a log may hold anything) and never allocates for a line that
//! is none of these, which is nearly every line.

use memchr::memmem;

/// What a line says, borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent<'a> {
    /// `MaxListenersExceededWarning`: `event` listeners on an `emitter` (its type name).
    MaxListeners { pid: Option<u32>, event: &'a str, emitter: &'a str },
    /// Any other process warning, by name (`DeprecationWarning`, `Warning`, ...).
    Warning { pid: Option<u32>, name: &'a str },
    /// V8 gave up: `FATAL ERROR: ... JavaScript heap out of memory` (one per crash).
    HeapOutOfMemory { pid: Option<u32> },
}

/// Lines the inspector itself prints to stderr; never events.
const INSPECTOR_LINES: [&[u8]; 5] = [
    b"Debugger listening on ",
    b"Debugger attached.",
    b"Debugger ending on ",
    b"Waiting for the debugger to disconnect",
    b"For help, see: https://nodejs.org/en/docs/inspector",
];

/// Whether a line may hold an event: the cheap test run on every line.
pub fn may_matter(line: &[u8]) -> bool {
    memmem::find(line, b"Warning").is_some() || memmem::find(line, b"FATAL ERROR").is_some()
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Option<LogEvent<'_>> {
    if !may_matter(line) {
        return None;
    }
    if INSPECTOR_LINES.iter().any(|l| memmem::find(line, l).is_some()) {
        return None;
    }
    if let Some(at) = memmem::find(line, b"FATAL ERROR:") {
        let rest = &line[at..];
        let oom = memmem::find(rest, b"JavaScript heap out of memory").is_some()
            || memmem::find(rest, b"heap limit").is_some();
        return oom.then_some(LogEvent::HeapOutOfMemory { pid: None });
    }
    let (pid, body) = match memmem::find(line, b"(node:") {
        Some(at) => {
            let rest = &line[at + 6..];
            let close = memchr::memchr(b')', rest)?;
            let pid = std::str::from_utf8(&rest[..close]).ok()?.parse::<u32>().ok()?;
            (Some(pid), trim_start(&rest[close + 1..]))
        }
        // Some log shippers strip the prefix: accept a line that starts with the warning.
        None => (None, trim_start(skip_timestamp(line))),
    };
    // Optional deprecation code: "[DEP0005] DeprecationWarning: ...".
    let body = if body.first() == Some(&b'[') {
        let close = memchr::memchr(b']', body)?;
        trim_start(&body[close + 1..])
    } else {
        body
    };
    let colon = memchr::memchr(b':', body)?;
    let name = std::str::from_utf8(&body[..colon]).ok()?;
    if !is_warning_name(name) {
        return None;
    }
    if name == "MaxListenersExceededWarning" {
        let (event, emitter) = parse_max_listeners(&body[colon + 1..])?;
        return Some(LogEvent::MaxListeners { pid, event, emitter });
    }
    Some(LogEvent::Warning { pid, name })
}

/// `Warning`, or an identifier ending in `Warning` (`DeprecationWarning`, `MyAppWarning`).
fn is_warning_name(name: &str) -> bool {
    name.ends_with("Warning") && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// From `Possible EventEmitter memory leak detected. 11 close listeners added to
/// [IncomingMessage]. MaxListeners is 10. Use ...` returns ("close", "IncomingMessage"). The
/// EventTarget form names `[AbortSignal]` or a bare `EventTarget`; event names may hold spaces.
fn parse_max_listeners(text: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(text).ok()?;
    let after = text.split_once("detected. ")?.1;
    let (head, tail) = after.rsplit_once(" listeners added to ")?;
    // head = "<count> <event>"
    let (count, event) = head.split_once(' ')?;
    count.parse::<u64>().ok()?;
    let emitter = match tail.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => tail.split(['.', ' ']).next()?,
    };
    // `inspect` may print "EventEmitter {...}" style names or class names with generics: keep
    // the type's first word.
    let emitter = emitter.split_whitespace().next().unwrap_or("");
    if event.is_empty() || emitter.is_empty() {
        return None;
    }
    Some((event, emitter))
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Skips a leading timestamp such as PM2's `--time` prefix (`2025-01-01T00:00:00: `).
fn skip_timestamp(line: &[u8]) -> &[u8] {
    if line.first().is_some_and(u8::is_ascii_digit) {
        if let Some(at) = memmem::find(line, b": ") {
            if at < 40 {
                return &line[at + 2..];
            }
        }
    }
    line
}

/// The pid in a V8 GC trace line (`[1234:0x5581d3c0]    9123 ms: Mark-Compact ...`), printed just
/// before a heap-OOM crash: it tells whose crash the following FATAL ERROR is.
pub fn gc_trace_pid(line: &[u8]) -> Option<u32> {
    let line = trim_start(line);
    let rest = line.strip_prefix(b"[")?;
    let colon = memchr::memchr(b':', rest)?;
    if !rest[colon + 1..].starts_with(b"0x") {
        return None;
    }
    std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ml<'a>(pid: Option<u32>, event: &'a str, emitter: &'a str) -> Option<LogEvent<'a>> {
        Some(LogEvent::MaxListeners { pid, event, emitter })
    }

    #[test]
    fn max_listeners_in_every_form() {
        // Node 18: no "MaxListeners is N."
        let l = b"(node:1234) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 close listeners added to [IncomingMessage]. Use emitter.setMaxListeners() to increase limit";
        assert_eq!(parse_line(l), ml(Some(1234), "close", "IncomingMessage"));
        // Node 20+: with it.
        let l = b"(node:77) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 close listeners added to [IncomingMessage]. MaxListeners is 10. Use emitter.setMaxListeners() to increase limit";
        assert_eq!(parse_line(l), ml(Some(77), "close", "IncomingMessage"));
        // EventTarget with a type.
        let l = b"(node:1) MaxListenersExceededWarning: Possible EventTarget memory leak detected. 11 abort listeners added to [AbortSignal]. Use events.setMaxListeners() to increase limit";
        assert_eq!(parse_line(l), ml(Some(1), "abort", "AbortSignal"));
        // The bare EventTarget.
        let l = b"(node:1) MaxListenersExceededWarning: Possible EventTarget memory leak detected. 21 foo listeners added to EventTarget. MaxListeners is 20. Use events.setMaxListeners() to increase limit";
        assert_eq!(parse_line(l), ml(Some(1), "foo", "EventTarget"));
        // Event names with spaces, symbols.
        let l = b"(node:9) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 my event listeners added to [Pool]. Use emitter.setMaxListeners() to increase limit";
        assert_eq!(parse_line(l), ml(Some(9), "my event", "Pool"));
        let l = b"(node:9) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 Symbol(kClose) listeners added to [Socket]. Use emitter.setMaxListeners() to increase limit";
        assert_eq!(parse_line(l), ml(Some(9), "Symbol(kClose)", "Socket"));
        // Behind a PM2 --time prefix, and with no (node:PID) at all.
        let l = b"2025-05-24T03:00:00: (node:4242) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 close listeners added to [IncomingMessage]. Use emitter.setMaxListeners() to increase limit";
        assert_eq!(parse_line(l), ml(Some(4242), "close", "IncomingMessage"));
        let l = b"MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 data listeners added to [Socket]. Use emitter.setMaxListeners() to increase limit";
        assert_eq!(parse_line(l), ml(None, "data", "Socket"));
    }

    #[test]
    fn other_warnings() {
        assert_eq!(
            parse_line(
                b"(node:12) [DEP0005] DeprecationWarning: Buffer() is deprecated due to security and usability issues."
            ),
            Some(LogEvent::Warning { pid: Some(12), name: "DeprecationWarning" })
        );
        assert_eq!(
            parse_line(b"(node:12) ExperimentalWarning: The Fetch API is an experimental feature."),
            Some(LogEvent::Warning { pid: Some(12), name: "ExperimentalWarning" })
        );
        assert_eq!(
            parse_line(b"(node:12) Warning: something odd"),
            Some(LogEvent::Warning { pid: Some(12), name: "Warning" })
        );
        assert_eq!(parse_line(b"(Use `node --trace-warnings ...` to show where the warning was created)"), None);
        assert_eq!(parse_line(b"GET /api 200 - user said Warning: nothing"), None);
        assert_eq!(parse_line(b"(node:abc) Warning: x"), None);
    }

    #[test]
    fn heap_out_of_memory() {
        for l in [
            &b"FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"[..],
            b"FATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed - JavaScript heap out of memory",
            b"FATAL ERROR: CALL_AND_RETRY_LAST Allocation failed - JavaScript heap out of memory",
        ] {
            assert_eq!(parse_line(l), Some(LogEvent::HeapOutOfMemory { pid: None }));
        }
        assert_eq!(parse_line(b"FATAL ERROR: v8::ToLocalChecked Empty MaybeLocal."), None);
        assert_eq!(
            gc_trace_pid(b"[4321:0x5e2d8c0]      812 ms: Mark-Compact 60.1 (64.2) -> 59.9 (64.9) MB"),
            Some(4321)
        );
        assert_eq!(gc_trace_pid(b"[INFO] 12:00 started"), None);
    }

    #[test]
    fn inspector_lines_are_ignored() {
        for l in [
            &b"Debugger listening on ws://127.0.0.1:9229/abc"[..],
            b"Debugger attached.",
            b"Waiting for the debugger to disconnect...",
        ] {
            assert_eq!(parse_line(l), None);
        }
    }

    #[test]
    fn garbage_is_not_an_event() {
        for l in [
            &b""[..],
            b"\xff\xfe Warning: \x00",
            b"(node:",
            b"(node:1) ",
            b"(node:1) Warning",
            b"(node:1) [DEP",
            b"FATAL ERROR",
        ] {
            let _ = parse_line(l);
        }
        assert_eq!(parse_line(b"(node:1) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. x listeners added to"), None);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Any bytes: no panic, and whatever is returned borrows sane text.
        #[test]
        fn any_bytes_parse_without_panic(line in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_line(&line);
            let _ = gc_trace_pid(&line);
        }

        /// Lines built around the real prefixes, with arbitrary tails, reach the deep paths.
        #[test]
        fn near_misses_parse_without_panic(
            prefix in prop::sample::select(vec![
                "(node:1) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. ",
                "(node:1) [DEP0005] ",
                "(node:",
                "FATAL ERROR: ",
                "2025-01-01T00:00:00: (node:2) ",
                "MaxListenersExceededWarning: ",
            ]),
            tail in ".{0,200}",
        ) {
            let line = format!("{prefix}{tail}");
            if let Some(LogEvent::MaxListeners { event, emitter, .. }) = parse_line(line.as_bytes()) {
                prop_assert!(!event.is_empty() && !emitter.is_empty());
            }
        }

        /// The warning survives any text around it and any event name without "listeners added".
        #[test]
        fn max_listeners_round_trip(pid in 1u32..4_000_000, event in "[a-zA-Z][a-zA-Z0-9 _:-]{0,30}", emitter in "[A-Z][A-Za-z0-9]{0,30}", count in 11u32..1000) {
            prop_assume!(!event.contains(" listeners added to ") && !event.ends_with(' '));
            let line = format!("(node:{pid}) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. {count} {event} listeners added to [{emitter}]. Use emitter.setMaxListeners() to increase limit");
            prop_assert_eq!(parse_line(line.as_bytes()), Some(LogEvent::MaxListeners { pid: Some(pid), event: &event, emitter: &emitter }));
        }
    }
}
