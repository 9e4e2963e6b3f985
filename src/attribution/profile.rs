//! One `HeapProfiler.getSamplingProfile` result, read with bounds: a tree of call frames whose
//! nodes carry the sampled bytes still alive that were allocated there, and the samples (one per
//! sampled live object, with its size and node). A process can be hostile, so the node count, the
//! tree's depth, the samples and every string are capped, and anything not of the expected shape
//! is an error rather than a guess.

use std::collections::HashMap;

use serde_json::Value;

use super::json::{self, JsonLimits};

/// Bounds on one profile.
#[derive(Debug, Clone, Copy)]
pub struct ProfileLimits {
    /// Nodes of the tree. A server's live allocations span a few thousand.
    pub max_nodes: usize,
    /// Depth of the tree; V8 records at most 128 frames per sample.
    pub max_depth: usize,
    /// Samples (sampled live objects).
    pub max_samples: usize,
    /// Characters kept of a function name or script URL.
    pub max_string: usize,
}

impl Default for ProfileLimits {
    fn default() -> Self {
        ProfileLimits { max_nodes: 100_000, max_depth: 256, max_samples: 2_000_000, max_string: 256 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Json(#[from] json::JsonError),
    #[error("not a sampling heap profile: {0}")]
    Shape(String),
    #[error("profile exceeds its bounds: {0}")]
    TooLarge(String),
}

/// A function as V8 names it: where it is defined (not the statement that allocated; V8 records
/// only the functions on the stack).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Frame {
    /// `(anonymous)` when V8 gives none.
    pub function: String,
    /// The script's URL or path; empty for builtins and V8's own nodes (`(root)`, `(V8 API)`).
    pub url: String,
    /// 1-based line of the function's definition; 0 when unknown.
    pub line: u32,
    /// 1-based column of the function's definition; 0 when unknown.
    pub column: u32,
}

impl Frame {
    /// The app's own code (or its dependencies'), not Node.js internals nor V8 builtins.
    pub fn is_user(&self) -> bool {
        !self.url.is_empty() && !self.url.starts_with("node:")
    }

    /// `file:line` for people: the URL without a `file://` scheme.
    pub fn location(&self) -> String {
        let file = self.url.strip_prefix("file://").unwrap_or(&self.url);
        if file.is_empty() {
            return "(native)".to_string();
        }
        format!("{file}:{}", self.line)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub frame: usize,
    /// The parent node's index; the root has none. Parents come before their children.
    pub parent: Option<usize>,
    /// Live bytes allocated here, as V8 estimates them from the samples (`selfSize`).
    pub self_bytes: u64,
    /// Live objects allocated here, estimated from the samples as V8 scales them.
    pub self_objects: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Distinct frames, indexed by [`Node::frame`].
    pub frames: Vec<Frame>,
    pub nodes: Vec<Node>,
}

impl Profile {
    /// Live bytes in the whole profile.
    pub fn total_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.self_bytes).sum()
    }
}

/// Parses the `result` of `HeapProfiler.getSamplingProfile` (`{"profile": {...}}`) or the profile
/// itself, from its JSON text. `interval` is the sampling interval the profile was taken with,
/// used to scale sample counts into object estimates as V8 scales bytes.
pub fn parse_text(text: &str, interval: u64, limits: ProfileLimits) -> Result<Profile, ProfileError> {
    let json_limits = JsonLimits {
        // Each tree level is an object and an array, plus the envelope's few levels.
        max_depth: limits.max_depth * 2 + 8,
        max_values: limits.max_nodes * 16 + limits.max_samples * 4 + 64,
    };
    let v = json::parse(text, json_limits)?;
    parse_value(&v, interval, limits)
}

/// As [`parse_text`], from a parsed value.
pub fn parse_value(v: &Value, interval: u64, limits: ProfileLimits) -> Result<Profile, ProfileError> {
    let shape = |s: &str| ProfileError::Shape(s.to_string());
    let v = v.get("profile").unwrap_or(v);
    let head = v.get("head").ok_or_else(|| shape("no head"))?;
    let mut profile = Profile::default();
    let mut frames: HashMap<Frame, usize> = HashMap::new();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    // (node, parent index, depth)
    let mut todo: Vec<(&Value, Option<usize>, usize)> = vec![(head, None, 0)];
    while let Some((n, parent, depth)) = todo.pop() {
        if depth >= limits.max_depth {
            return Err(ProfileError::TooLarge(format!("tree deeper than {}", limits.max_depth)));
        }
        if profile.nodes.len() >= limits.max_nodes {
            return Err(ProfileError::TooLarge(format!("more than {} nodes", limits.max_nodes)));
        }
        let cf = n.get("callFrame").ok_or_else(|| shape("a node without callFrame"))?;
        let frame = Frame {
            function: match cut(
                cf.get("functionName").and_then(Value::as_str).ok_or_else(|| shape("no functionName"))?,
                limits.max_string,
            ) {
                s if s.is_empty() => "(anonymous)".to_string(),
                s => s,
            },
            url: cut(cf.get("url").and_then(Value::as_str).ok_or_else(|| shape("no url"))?, limits.max_string),
            line: one_based(cf.get("lineNumber")).ok_or_else(|| shape("bad lineNumber"))?,
            column: one_based(cf.get("columnNumber")).ok_or_else(|| shape("bad columnNumber"))?,
        };
        let next = frames.len();
        let frame = *frames.entry(frame.clone()).or_insert_with(|| {
            profile.frames.push(frame);
            next
        });
        let self_bytes = n.get("selfSize").and_then(as_count).ok_or_else(|| shape("bad selfSize"))?;
        let id = n.get("id").and_then(Value::as_u64).ok_or_else(|| shape("bad id"))?;
        let index = profile.nodes.len();
        if by_id.insert(id, index).is_some() {
            return Err(shape("two nodes with one id"));
        }
        profile.nodes.push(Node { frame, parent, self_bytes, self_objects: 0.0 });
        let children = n.get("children").and_then(Value::as_array).ok_or_else(|| shape("no children"))?;
        // Reversed so the walk keeps the document's order.
        for c in children.iter().rev() {
            todo.push((c, Some(index), depth + 1));
        }
    }
    if let Some(samples) = v.get("samples") {
        let samples = samples.as_array().ok_or_else(|| shape("samples is not a list"))?;
        if samples.len() > limits.max_samples {
            return Err(ProfileError::TooLarge(format!("more than {} samples", limits.max_samples)));
        }
        for s in samples {
            let size = s.get("size").and_then(as_count).ok_or_else(|| shape("bad sample size"))?;
            let node = s.get("nodeId").and_then(Value::as_u64).ok_or_else(|| shape("bad sample nodeId"))?;
            // V8 lists samples of nodes it left out of the tree (seen on Node.js 20): their
            // bytes are not in any selfSize either, so they are skipped.
            if let Some(&index) = by_id.get(&node) {
                profile.nodes[index].self_objects += scale(size, interval);
            }
        }
    }
    Ok(profile)
}

/// How many objects one sample of `size` bytes stands for: V8 samples an object with probability
/// `1 - exp(-size / interval)` and scales by its inverse (`SamplingHeapProfiler::ScaleSample`).
pub fn scale(size: u64, interval: u64) -> f64 {
    if size == 0 || interval == 0 {
        return 1.0;
    }
    1.0 / (1.0 - (-(size as f64) / interval as f64).exp())
}

fn as_count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e18).map(|f| f as u64))
}

/// V8's 0-based positions, where -1 means none, as 1-based ones with 0 for none.
fn one_based(v: Option<&Value>) -> Option<u32> {
    let n = v?.as_i64()?;
    match n {
        -1 => Some(0),
        0..=0x7fff_fffe => Some(n as u32 + 1),
        _ => None,
    }
}

fn cut(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A profile of the shape V8 sends: (root) > listOnTimeout (node:) > handler (app.js) > set
    /// (builtin), and handler > render (app.js).
    pub(crate) fn sample_profile(handler_bytes: u64, set_bytes: u64, render_bytes: u64) -> String {
        serde_json::json!({"profile": {
            "head": {"callFrame": {"functionName": "(root)", "scriptId": "0", "url": "", "lineNumber": -1, "columnNumber": -1},
              "selfSize": 0, "id": 1, "children": [
                {"callFrame": {"functionName": "listOnTimeout", "scriptId": "9", "url": "node:internal/timers", "lineNumber": 522, "columnNumber": 24},
                 "selfSize": 100, "id": 2, "children": [
                    {"callFrame": {"functionName": "handler", "scriptId": "50", "url": "/srv/app.js", "lineNumber": 9, "columnNumber": 17},
                     "selfSize": handler_bytes, "id": 3, "children": [
                        {"callFrame": {"functionName": "set", "scriptId": "0", "url": "", "lineNumber": -1, "columnNumber": -1},
                         "selfSize": set_bytes, "id": 4, "children": []},
                        {"callFrame": {"functionName": "render", "scriptId": "50", "url": "/srv/app.js", "lineNumber": 29, "columnNumber": 0},
                         "selfSize": render_bytes, "id": 5, "children": []}
                     ]}
                 ]}
              ]},
            "samples": [{"size": 400, "nodeId": 3, "ordinal": 1}, {"size": 65536, "nodeId": 4, "ordinal": 2}]
        }})
        .to_string()
    }

    #[test]
    fn reads_v8_s_shape() {
        let p = parse_text(&sample_profile(1000, 2000, 300), 32768, ProfileLimits::default()).unwrap();
        assert_eq!(p.nodes.len(), 5);
        assert_eq!(p.total_bytes(), 3400);
        let handler = &p.nodes[2];
        assert_eq!(
            p.frames[handler.frame],
            Frame { function: "handler".into(), url: "/srv/app.js".into(), line: 10, column: 18 }
        );
        assert_eq!(p.nodes[3].parent, Some(2));
        assert_eq!(p.frames[p.nodes[0].frame].line, 0);
        // A 400-byte object is sampled once in about 82 at 32 KiB.
        assert!((handler.self_objects - 82.4).abs() < 0.5, "{}", handler.self_objects);
        assert!(p.frames[handler.frame].is_user());
        assert!(!p.frames[p.nodes[1].frame].is_user());
        assert!(!p.frames[p.nodes[3].frame].is_user());
        assert_eq!(p.frames[handler.frame].location(), "/srv/app.js:10");
    }

    #[test]
    fn hostile_profiles_are_refused() {
        let l = ProfileLimits { max_nodes: 4, max_depth: 3, max_samples: 1, max_string: 5 };
        assert!(matches!(parse_text(&sample_profile(1, 1, 1), 1, l), Err(ProfileError::TooLarge(_))));
        for bad in [
            r#"{"profile":{}}"#,
            r#"{"head":{"callFrame":{},"selfSize":0,"id":1,"children":[]}}"#,
            r#"{"head":{"callFrame":{"functionName":"f","url":"u","lineNumber":-5,"columnNumber":0},"selfSize":0,"id":1,"children":[]}}"#,
            r#"{"head":{"callFrame":{"functionName":"f","url":"u","lineNumber":1,"columnNumber":0},"selfSize":-1,"id":1,"children":[]}}"#,
            r#"{"head":{"callFrame":{"functionName":"f","url":"u","lineNumber":1,"columnNumber":0},"selfSize":0,"id":1,"children":[]},"samples":[{"size":-1,"nodeId":1}]}"#,
            "garbage",
        ] {
            assert!(parse_text(bad, 1, ProfileLimits::default()).is_err(), "{bad}");
        }
        // A chain as deep as V8 records (128 frames) is read; past the bound it is refused.
        let mut node = serde_json::json!({"callFrame": {"functionName": "f", "url": "/a.js", "lineNumber": 1, "columnNumber": 1}, "selfSize": 8, "id": 0, "children": []});
        for id in 1..200 {
            node = serde_json::json!({"callFrame": {"functionName": "f", "url": "/a.js", "lineNumber": 1, "columnNumber": 1}, "selfSize": 0, "id": id, "children": [node]});
        }
        let text = serde_json::json!({"head": node}).to_string();
        assert_eq!(parse_text(&text, 1, ProfileLimits::default()).unwrap().nodes.len(), 200);
        let shallow = ProfileLimits { max_depth: 128, ..ProfileLimits::default() };
        assert!(matches!(parse_text(&text, 1, shallow), Err(ProfileError::TooLarge(_)) | Err(ProfileError::Json(_))));
        // Long names are cut.
        let long = serde_json::json!({"head": {"callFrame": {"functionName": "x".repeat(10_000), "url": "/a.js", "lineNumber": 0, "columnNumber": 0}, "selfSize": 0, "id": 1, "children": []}}).to_string();
        assert_eq!(parse_text(&long, 1, ProfileLimits::default()).unwrap().frames[0].function.len(), 256);
    }
}
