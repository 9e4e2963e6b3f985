//! A streaming reader of V8's `.heapsnapshot` JSON: one pass over a `Read`, through a buffer of
//! fixed size, handing each node, edge and wanted string to a [`Sink`] as it goes. Nothing of the
//! file is held whole: the `snapshot` header (meta, counts) is the only value parsed as a tree,
//! under a cap; `nodes` and `edges` are flat arrays of unsigned integers read straight into the
//! sink; `strings` come last in the file, so a sink says which indices it wants (those its nodes
//! and edges named) and every other string is skipped unread. Other sections (allocation traces,
//! samples, locations) are skipped.
//!
//! Field positions come from `snapshot.meta` (`node_fields`, `edge_fields`), never from a fixed
//! order: V8 added `detachedness` to nodes in 2021, and may add more.

use std::io::Read;

/// Largest `snapshot` header accepted (its meta is a few KiB).
const MAX_HEADER: usize = 1 << 20;
/// Longest string kept; longer ones are cut (a name in a table or a path needs no more).
pub const MAX_STRING: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("reading the snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a heap snapshot: {what} at byte {offset}")]
    Syntax { what: String, offset: u64 },
    #[error("heap snapshot meta: {0}")]
    Meta(String),
}

/// What `snapshot.meta` says about the layout, resolved to positions.
#[derive(Debug, Clone)]
pub struct Meta {
    pub node_fields: Vec<String>,
    pub node_types: Vec<String>,
    pub edge_fields: Vec<String>,
    pub edge_types: Vec<String>,
    pub node_count: u64,
    pub edge_count: u64,
    /// Positions of the node fields the readers use.
    pub node_type: usize,
    pub node_name: usize,
    pub node_id: usize,
    pub node_self_size: usize,
    pub node_edge_count: usize,
    pub edge_type: usize,
    pub edge_name: usize,
    pub edge_to: usize,
}

impl Meta {
    fn from_header(header: &[u8]) -> Result<Meta, ParseError> {
        #[derive(serde::Deserialize)]
        struct Header {
            meta: RawMeta,
            #[serde(default)]
            node_count: u64,
            #[serde(default)]
            edge_count: u64,
        }
        #[derive(serde::Deserialize)]
        struct RawMeta {
            node_fields: Vec<String>,
            node_types: Vec<serde_json::Value>,
            edge_fields: Vec<String>,
            edge_types: Vec<serde_json::Value>,
        }
        let h: Header = serde_json::from_slice(header).map_err(|e| ParseError::Meta(e.to_string()))?;
        let pos = |fields: &[String], name: &str| {
            fields.iter().position(|f| f == name).ok_or_else(|| ParseError::Meta(format!("no field {name:?}")))
        };
        let enum_of = |types: &[serde_json::Value], at: usize, what: &str| -> Result<Vec<String>, ParseError> {
            types
                .get(at)
                .and_then(|v| v.as_array())
                .map(|a| a.iter().map(|s| s.as_str().unwrap_or("").to_string()).collect())
                .ok_or_else(|| ParseError::Meta(format!("no list of {what} types")))
        };
        let m = h.meta;
        if m.node_fields.len() > 32 || m.edge_fields.len() > 32 {
            return Err(ParseError::Meta("more than 32 fields per node or edge".into()));
        }
        let node_type = pos(&m.node_fields, "type")?;
        let edge_type = pos(&m.edge_fields, "type")?;
        Ok(Meta {
            node_type,
            node_name: pos(&m.node_fields, "name")?,
            node_id: pos(&m.node_fields, "id")?,
            node_self_size: pos(&m.node_fields, "self_size")?,
            node_edge_count: pos(&m.node_fields, "edge_count")?,
            edge_type,
            edge_name: pos(&m.edge_fields, "name_or_index")?,
            edge_to: pos(&m.edge_fields, "to_node")?,
            node_types: enum_of(&m.node_types, node_type, "node")?,
            edge_types: enum_of(&m.edge_types, edge_type, "edge")?,
            node_fields: m.node_fields,
            edge_fields: m.edge_fields,
            node_count: h.node_count,
            edge_count: h.edge_count,
        })
    }

    /// The index of node type `name` (`object`, `closure`, ...), if the snapshot has it.
    pub fn node_type_index(&self, name: &str) -> Option<u8> {
        self.node_types.iter().position(|t| t == name).map(|i| i as u8)
    }

    pub fn edge_type_index(&self, name: &str) -> Option<u8> {
        self.edge_types.iter().position(|t| t == name).map(|i| i as u8)
    }
}

/// Receives a snapshot as it is read.
pub trait Sink {
    /// The header, before any node.
    fn meta(&mut self, meta: &Meta) -> Result<(), ParseError>;
    /// One node's fields, in `meta.node_fields` order.
    fn node(&mut self, fields: &[u32]) -> Result<(), ParseError>;
    /// One edge's fields, in `meta.edge_fields` order. Edges come in node order, each node's
    /// `edge_count` of them.
    fn edge(&mut self, fields: &[u32]) -> Result<(), ParseError>;
    /// Whether string `index` is wanted; asked once per string, in order.
    fn wants_string(&mut self, index: u32) -> bool;
    /// A wanted string, cut to [`MAX_STRING`] characters.
    fn string(&mut self, index: u32, value: String);
}

/// Reads a whole snapshot from `input` into `sink`; returns its meta.
pub fn parse<R: Read, S: Sink>(input: R, sink: &mut S) -> Result<Meta, ParseError> {
    let mut r = Reader::new(input);
    r.expect(b'{')?;
    let mut meta: Option<Meta> = None;
    let mut first = true;
    loop {
        r.skip_ws()?;
        if r.peek()? == Some(b'}') {
            r.bump();
            break;
        }
        if !first {
            r.expect(b',')?;
        }
        first = false;
        let key = r.key()?;
        match key.as_str() {
            "snapshot" => {
                let header = r.raw_value(MAX_HEADER)?;
                let m = Meta::from_header(&header)?;
                sink.meta(&m)?;
                meta = Some(m);
            }
            "nodes" | "edges" => {
                let m = meta.as_ref().ok_or_else(|| r.error("nodes or edges before the snapshot header"))?;
                let is_nodes = key == "nodes";
                let width = if is_nodes { m.node_fields.len() } else { m.edge_fields.len() };
                let mut fields = [0u32; 32];
                let mut n = 0usize;
                r.expect(b'[')?;
                r.skip_ws()?;
                if r.peek()? == Some(b']') {
                    r.bump();
                } else {
                    loop {
                        fields[n] = r.uint()?;
                        n += 1;
                        if n == width {
                            if is_nodes {
                                sink.node(&fields[..width])?;
                            } else {
                                sink.edge(&fields[..width])?;
                            }
                            n = 0;
                        }
                        r.skip_ws()?;
                        match r.next()? {
                            b',' => continue,
                            b']' => break,
                            _ => return Err(r.error("expected , or ] in an integer array")),
                        }
                    }
                }
                if n != 0 {
                    return Err(r.error("an array cut in the middle of a record"));
                }
            }
            "strings" => {
                r.expect(b'[')?;
                r.skip_ws()?;
                let mut index = 0u32;
                if r.peek()? == Some(b']') {
                    r.bump();
                } else {
                    loop {
                        r.skip_ws()?;
                        if sink.wants_string(index) {
                            let s = r.string(MAX_STRING)?;
                            sink.string(index, s);
                        } else {
                            r.skip_string()?;
                        }
                        index = index.checked_add(1).ok_or_else(|| r.error("too many strings"))?;
                        r.skip_ws()?;
                        match r.next()? {
                            b',' => continue,
                            b']' => break,
                            _ => return Err(r.error("expected , or ] in strings")),
                        }
                    }
                }
            }
            _ => r.skip_value(0)?,
        }
    }
    meta.ok_or_else(|| ParseError::Meta("no snapshot header".into()))
}

/// A byte reader over a fixed buffer.
struct Reader<R> {
    input: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    consumed: u64,
}

impl<R: Read> Reader<R> {
    fn new(input: R) -> Self {
        Reader { input, buf: vec![0; 1 << 20].into_boxed_slice(), pos: 0, len: 0, consumed: 0 }
    }

    fn error(&self, what: &str) -> ParseError {
        ParseError::Syntax { what: what.to_string(), offset: self.consumed + self.pos as u64 }
    }

    #[inline]
    fn peek(&mut self) -> Result<Option<u8>, ParseError> {
        if self.pos == self.len && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.pos]))
    }

    #[inline]
    fn bump(&mut self) {
        self.pos += 1;
    }

    #[inline]
    fn next(&mut self) -> Result<u8, ParseError> {
        match self.peek()? {
            Some(b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.error("unexpected end of file")),
        }
    }

    fn fill(&mut self) -> Result<bool, ParseError> {
        self.consumed += self.len as u64;
        self.pos = 0;
        self.len = 0;
        loop {
            match self.input.read(&mut self.buf) {
                Ok(n) => {
                    self.len = n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    #[inline]
    fn skip_ws(&mut self) -> Result<(), ParseError> {
        while let Some(b) = self.peek()? {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.pos += 1;
        }
        Ok(())
    }

    fn expect(&mut self, want: u8) -> Result<(), ParseError> {
        self.skip_ws()?;
        if self.next()? != want {
            return Err(self.error(&format!("expected {:?}", want as char)));
        }
        Ok(())
    }

    fn key(&mut self) -> Result<String, ParseError> {
        self.skip_ws()?;
        let k = self.string(64)?;
        self.expect(b':')?;
        self.skip_ws()?;
        Ok(k)
    }

    /// An unsigned integer that fits in 32 bits.
    #[inline]
    fn uint(&mut self) -> Result<u32, ParseError> {
        self.skip_ws()?;
        let mut v: u64 = 0;
        let mut digits = 0;
        loop {
            if self.pos == self.len && !self.fill()? {
                break;
            }
            let b = self.buf[self.pos];
            if !b.is_ascii_digit() {
                break;
            }
            v = v * 10 + (b - b'0') as u64;
            digits += 1;
            if v > u32::MAX as u64 {
                return Err(self.error("an integer over 32 bits"));
            }
            self.pos += 1;
        }
        if digits == 0 {
            return Err(self.error("expected an unsigned integer"));
        }
        Ok(v as u32)
    }

    /// A JSON string, decoded, cut to `max` characters (the rest is read and dropped).
    fn string(&mut self, max: usize) -> Result<String, ParseError> {
        if self.next()? != b'"' {
            return Err(self.error("expected a string"));
        }
        let mut bytes: Vec<u8> = Vec::new();
        let mut chars = 0usize;
        let push = |bytes: &mut Vec<u8>, chars: &mut usize, c: char| {
            if *chars < max {
                let mut tmp = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
            *chars += 1;
        };
        loop {
            let b = self.next()?;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = self.next()?;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi) {
                                // A pair, or a lone surrogate (V8 writes those too).
                                if self.peek()? == Some(b'\\') {
                                    self.bump();
                                    if self.next()? != b'u' {
                                        return Err(self.error("bad escape after a surrogate"));
                                    }
                                    let lo = self.hex4()?;
                                    if (0xDC00..0xE000).contains(&lo) {
                                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                        char::from_u32(c).unwrap_or('\u{FFFD}')
                                    } else {
                                        push(&mut bytes, &mut chars, '\u{FFFD}');
                                        char::from_u32(lo).unwrap_or('\u{FFFD}')
                                    }
                                } else {
                                    '\u{FFFD}'
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{FFFD}')
                            }
                        }
                        _ => return Err(self.error("bad escape in a string")),
                    };
                    push(&mut bytes, &mut chars, c);
                }
                _ => {
                    if chars < max {
                        bytes.push(b);
                    }
                    // Count characters, not bytes: continuation bytes do not start one.
                    if b & 0xC0 != 0x80 {
                        chars += 1;
                    }
                }
            }
        }
        // A cut may split a UTF-8 sequence; lossy decoding mends it.
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut v = 0;
        for _ in 0..4 {
            let b = self.next()?;
            let d = (b as char).to_digit(16).ok_or_else(|| self.error("bad \\u escape"))?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    /// Skips a string without decoding it: only quotes and backslashes matter.
    fn skip_string(&mut self) -> Result<(), ParseError> {
        if self.next()? != b'"' {
            return Err(self.error("expected a string"));
        }
        loop {
            if self.pos == self.len && !self.fill()? {
                return Err(self.error("unexpected end of file in a string"));
            }
            let hay = &self.buf[self.pos..self.len];
            match memchr::memchr2(b'"', b'\\', hay) {
                None => self.pos = self.len,
                Some(i) => {
                    let b = hay[i];
                    self.pos += i + 1;
                    if b == b'"' {
                        return Ok(());
                    }
                    self.next()?;
                }
            }
        }
    }

    /// Skips any JSON value.
    fn skip_value(&mut self, depth: usize) -> Result<(), ParseError> {
        if depth > 256 {
            return Err(self.error("nesting too deep"));
        }
        self.skip_ws()?;
        match self.peek()? {
            Some(b'"') => self.skip_string(),
            Some(open @ (b'[' | b'{')) => {
                self.bump();
                let close = if open == b'[' { b']' } else { b'}' };
                self.skip_ws()?;
                if self.peek()? == Some(close) {
                    self.bump();
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.skip_ws()?;
                        self.skip_string()?;
                        self.expect(b':')?;
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_ws()?;
                    match self.next()? {
                        b',' => continue,
                        b if b == close => return Ok(()),
                        _ => return Err(self.error("expected , or a closing bracket")),
                    }
                }
            }
            Some(_) => {
                // A number, true, false or null.
                let mut n = 0;
                while let Some(b) = self.peek()? {
                    if !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')) {
                        break;
                    }
                    self.bump();
                    n += 1;
                }
                if n == 0 {
                    return Err(self.error("expected a value"));
                }
                Ok(())
            }
            None => Err(self.error("unexpected end of file")),
        }
    }

    /// The raw bytes of the next value, at most `max` of them.
    fn raw_value(&mut self, max: usize) -> Result<Vec<u8>, ParseError> {
        self.skip_ws()?;
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let b = self.next()?;
            out.push(b);
            if out.len() > max {
                return Err(self.error("the snapshot header is too large"));
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or_else(|| self.error("unbalanced header"))?;
                    if depth == 0 {
                        return Ok(out);
                    }
                }
                _ if depth == 0 => return Err(self.error("the snapshot header is not an object")),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a snapshot in V8's format from (type, name, id, self_size, edges) nodes, edges as
    /// (type, name_or_index, to node index). Names are strings, interned here.
    pub struct Builder {
        pub strings: Vec<String>,
        nodes: Vec<[u32; 7]>,
        edges: Vec<[u32; 3]>,
        sources: Vec<usize>,
    }

    pub const NODE_TYPES: [&str; 14] = [
        "hidden",
        "array",
        "string",
        "object",
        "code",
        "closure",
        "regexp",
        "number",
        "native",
        "synthetic",
        "concatenated string",
        "sliced string",
        "symbol",
        "bigint",
    ];
    pub const EDGE_TYPES: [&str; 7] = ["context", "element", "property", "internal", "hidden", "shortcut", "weak"];

    impl Builder {
        pub fn new() -> Self {
            Builder { strings: vec![String::new()], nodes: Vec::new(), edges: Vec::new(), sources: Vec::new() }
        }

        pub fn intern(&mut self, s: &str) -> u32 {
            if let Some(i) = self.strings.iter().position(|x| x == s) {
                return i as u32;
            }
            self.strings.push(s.to_string());
            (self.strings.len() - 1) as u32
        }

        /// Adds a node; returns its index.
        pub fn node(&mut self, ty: &str, name: &str, id: u32, size: u32) -> usize {
            let t = NODE_TYPES.iter().position(|x| *x == ty).unwrap() as u32;
            let n = self.intern(name);
            self.nodes.push([t, n, id, size, 0, 0, 0]);
            self.nodes.len() - 1
        }

        /// Adds an edge from `from` (edges must be added in order of their source node).
        pub fn edge(&mut self, from: usize, ty: &str, name: &str, to: usize) {
            let t = EDGE_TYPES.iter().position(|x| *x == ty).unwrap() as u32;
            let n = if ty == "element" || ty == "hidden" { name.parse().unwrap() } else { self.intern(name) };
            self.nodes[from][4] += 1;
            self.edges.push([t, n, to as u32]);
            // Remember the source to sort edges by it at the end.
            self.sources.push(from);
        }

        pub fn json(&self) -> String {
            let mut order: Vec<usize> = (0..self.edges.len()).collect();
            order.sort_by_key(|&i| self.sources[i]);
            // Fields in an unusual order, to prove positions come from the meta.
            let nodes: Vec<String> = self
                .nodes
                .iter()
                .map(|n| format!("{},{},{},{},{},{},{}", n[2], n[0], n[1], n[3], n[4], n[5], n[6]))
                .collect();
            let edges: Vec<String> =
                order.iter().map(|&i| self.edges[i]).map(|e| format!("{},{},{}", e[0], e[1], e[2] * 7)).collect();
            format!(
                r#"{{"snapshot":{{"meta":{{"node_fields":["id","type","name","self_size","edge_count","trace_node_id","detachedness"],
                "node_types":["number",{},"string","number","number","number","number"],
                "edge_fields":["type","name_or_index","to_node"],"edge_types":[{},"string_or_number","node"],
                "trace_function_info_fields":[],"location_fields":["object_index","script_id","line","column"],"sample_fields":["timestamp_us","last_assigned_id"]}},
                "node_count":{},"edge_count":{},"trace_function_count":0}},
                "nodes":[{}],
                "edges":[{}],
                "trace_function_infos":[],"trace_tree":[],"samples":[],"locations":[1,2,3,4],
                "strings":{}}}"#,
                serde_json::to_string(&NODE_TYPES).unwrap(),
                serde_json::to_string(&EDGE_TYPES).unwrap(),
                self.nodes.len(),
                self.edges.len(),
                nodes.join(",\n"),
                edges.join(",\n"),
                serde_json::to_string(&self.strings).unwrap(),
            )
        }
    }

    #[derive(Default)]
    struct Collect {
        nodes: Vec<Vec<u32>>,
        edges: Vec<Vec<u32>>,
        strings: Vec<(u32, String)>,
    }

    impl Sink for Collect {
        fn meta(&mut self, _: &Meta) -> Result<(), ParseError> {
            Ok(())
        }
        fn node(&mut self, f: &[u32]) -> Result<(), ParseError> {
            self.nodes.push(f.to_vec());
            Ok(())
        }
        fn edge(&mut self, f: &[u32]) -> Result<(), ParseError> {
            self.edges.push(f.to_vec());
            Ok(())
        }
        fn wants_string(&mut self, i: u32) -> bool {
            i % 2 == 1
        }
        fn string(&mut self, i: u32, s: String) {
            self.strings.push((i, s));
        }
    }

    #[test]
    fn fields_come_from_the_meta_and_unwanted_strings_are_skipped() {
        let mut b = Builder::new();
        let root = b.node("synthetic", "", 1, 0);
        let obj = b.node("object", "Foo", 3, 24);
        b.edge(root, "property", "foo", obj);
        let text = b.json();
        let mut sink = Collect::default();
        let meta = parse(text.as_bytes(), &mut sink).unwrap();
        assert_eq!((meta.node_id, meta.node_type, meta.node_name), (0, 1, 2));
        assert_eq!(meta.node_types[3], "object");
        assert_eq!(sink.nodes.len(), 2);
        assert_eq!(sink.nodes[1][meta.node_id], 3);
        assert_eq!(sink.nodes[1][meta.node_self_size], 24);
        assert_eq!(sink.edges, vec![vec![2, b.strings.iter().position(|s| s == "foo").unwrap() as u32, 7]]);
        // Strings 1 ("Foo") and 3 would be kept; 0 and 2 skipped.
        assert_eq!(sink.strings, vec![(1, "Foo".to_string())]);
    }

    #[test]
    fn strings_are_decoded_and_cut() {
        let long = "é".repeat(300);
        let json = format!(
            r#"{{"snapshot":{{"meta":{{"node_fields":["type","name","id","self_size","edge_count"],"node_types":[["object"]],"edge_fields":["type","name_or_index","to_node"],"edge_types":[["property"]]}}}},"nodes":[],"edges":[],"strings":["x","a\"b\\c\u00e9\ud83d\ude00\ud800z","{long}"]}}"#
        );
        struct All(Vec<String>);
        impl Sink for All {
            fn meta(&mut self, _: &Meta) -> Result<(), ParseError> {
                Ok(())
            }
            fn node(&mut self, _: &[u32]) -> Result<(), ParseError> {
                Ok(())
            }
            fn edge(&mut self, _: &[u32]) -> Result<(), ParseError> {
                Ok(())
            }
            fn wants_string(&mut self, _: u32) -> bool {
                true
            }
            fn string(&mut self, _: u32, s: String) {
                self.0.push(s);
            }
        }
        let mut all = All(Vec::new());
        parse(json.as_bytes(), &mut all).unwrap();
        assert_eq!(all.0[1], "a\"b\\cé😀\u{FFFD}z");
        assert_eq!(all.0[2].chars().count(), MAX_STRING);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"nodes":[1,2]}"#,
            r#"{"snapshot":{"meta":{}}}"#,
            r#"{"snapshot":{"meta":{"node_fields":["type","name","id","self_size","edge_count"],"node_types":[["object"]],"edge_fields":["type","name_or_index","to_node"],"edge_types":[["property"]]}},"nodes":[1,2,3]}"#,
            r#"{"snapshot":{"meta":{"node_fields":["type","name","id","self_size","edge_count"],"node_types":[["object"]],"edge_fields":["type","name_or_index","to_node"],"edge_types":[["property"]]}},"nodes":[1,2,3,4,99999999999]}"#,
            r#"{"snapshot":{"meta":{"node_fields":["type","name","id","self_size","edge_count"],"node_types":[["object"]],"edge_fields":["type","name_or_index","to_node"],"edge_types":[["property"]]}},"nodes":[-1]}"#,
        ] {
            let mut sink = Collect::default();
            assert!(parse(bad.as_bytes(), &mut sink).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_across_buffer_boundaries() {
        // More than one buffer of integers and strings.
        let mut b = Builder::new();
        let root = b.node("synthetic", "", 1, 0);
        for i in 0..120_000u32 {
            let n = b.node("object", if i % 2 == 0 { "Even" } else { "Odd" }, 3 + 2 * i, 1_000_000 + i);
            b.edge(root, "element", &i.to_string(), n);
        }
        let text = b.json();
        assert!(text.len() > 2 << 20);
        let mut sink = Collect::default();
        parse(text.as_bytes(), &mut sink).unwrap();
        assert_eq!(sink.nodes.len(), 120_001);
        assert_eq!(sink.nodes[120_000][3], 1_119_999);
        assert_eq!(sink.edges.len(), 120_000);
    }
}
