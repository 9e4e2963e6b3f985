//! A sampling heap profile in pprof's format (`profile.proto`, gzipped), which `go tool pprof`,
//! Grafana Pyroscope and speedscope open. Sample types `objects/count` and `space/bytes` (live
//! objects and bytes, as the Node.js pprof library names them), one sample per profile node that
//! holds live bytes, its stack leaf first. Written by hand: the message is small and fixed, and
//! the gzip member uses stored (uncompressed) deflate blocks, which every reader accepts.

use std::collections::HashMap;

use super::profile::Profile;

/// Encodes `profile` (taken with `interval` bytes between samples, `duration_nanos` after sampling
/// started, at `time_nanos` since the epoch) as a gzipped `profile.proto` message.
pub fn encode(profile: &Profile, interval: u64, time_nanos: i64, duration_nanos: i64) -> Vec<u8> {
    gzip(&encode_raw(profile, interval, time_nanos, duration_nanos))
}

/// The `profile.proto` message, not compressed.
pub fn encode_raw(profile: &Profile, interval: u64, time_nanos: i64, duration_nanos: i64) -> Vec<u8> {
    let mut strings = Strings::default();
    strings.id("");
    let mut out = Vec::new();
    let objects = value_type(&mut strings, "objects", "count");
    let space = value_type(&mut strings, "space", "bytes");
    message(&mut out, 1, &objects);
    message(&mut out, 1, &space);
    // Functions by (name, file, line); a location per frame (a function at its line).
    let mut functions: HashMap<usize, u64> = HashMap::new();
    let mut function_msgs = Vec::new();
    let mut location_msgs = Vec::new();
    let mut location_of = |frame: usize, strings: &mut Strings| -> u64 {
        if let Some(id) = functions.get(&frame) {
            return *id;
        }
        let id = functions.len() as u64 + 1;
        functions.insert(frame, id);
        let f = &profile.frames[frame];
        let mut func = Vec::new();
        varint_field(&mut func, 1, id);
        let name = strings.id(&f.function);
        varint_field(&mut func, 2, name);
        varint_field(&mut func, 3, name);
        varint_field(&mut func, 4, strings.id(f.url.strip_prefix("file://").unwrap_or(&f.url)));
        varint_field(&mut func, 5, f.line as u64);
        function_msgs.push(func);
        let mut line = Vec::new();
        varint_field(&mut line, 1, id);
        varint_field(&mut line, 2, f.line as u64);
        varint_field(&mut line, 3, f.column as u64);
        let mut loc = Vec::new();
        varint_field(&mut loc, 1, id);
        message(&mut loc, 4, &line);
        location_msgs.push(loc);
        id
    };
    // Each node's stack, leaf first, without V8's (root).
    let mut stacks: Vec<Vec<u64>> = Vec::with_capacity(profile.nodes.len());
    for node in &profile.nodes {
        let mut stack = Vec::new();
        if node.parent.is_some() {
            stack.push(location_of(node.frame, &mut strings));
            if let Some(p) = node.parent {
                stack.extend_from_slice(&stacks[p]);
            }
        }
        if node.self_bytes > 0 || node.self_objects > 0.0 {
            let mut sample = Vec::new();
            packed(&mut sample, 1, &stack);
            let values = [node.self_objects.round() as u64, node.self_bytes];
            packed(&mut sample, 2, &values);
            message(&mut out, 2, &sample);
        }
        stacks.push(stack);
    }
    for loc in &location_msgs {
        message(&mut out, 4, loc);
    }
    for func in &function_msgs {
        message(&mut out, 5, func);
    }
    // Strings are all known once functions and locations are.
    let period_type = value_type(&mut strings, "space", "bytes");
    let space_id = strings.id("space");
    for s in &strings.list {
        bytes_field(&mut out, 6, s.as_bytes());
    }
    varint_field(&mut out, 9, time_nanos as u64);
    varint_field(&mut out, 10, duration_nanos as u64);
    message(&mut out, 11, &period_type);
    varint_field(&mut out, 12, interval);
    varint_field(&mut out, 14, space_id);
    out
}

#[derive(Default)]
struct Strings {
    list: Vec<String>,
    index: HashMap<String, u64>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.list.len() as u64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn value_type(strings: &mut Strings, kind: &str, unit: &str) -> Vec<u8> {
    let mut m = Vec::new();
    varint_field(&mut m, 1, strings.id(kind));
    varint_field(&mut m, 2, strings.id(unit));
    m
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    if v == 0 {
        return; // proto3 default
    }
    varint(out, (field as u64) << 3);
    varint(out, v);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(out, ((field as u64) << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn message(out: &mut Vec<u8>, field: u32, m: &[u8]) {
    bytes_field(out, field, m);
}

fn packed(out: &mut Vec<u8>, field: u32, values: &[u64]) {
    let mut body = Vec::new();
    for v in values {
        varint(&mut body, *v);
    }
    bytes_field(out, field, &body);
}

/// A gzip member of stored deflate blocks (RFC 1951 §3.2.4, RFC 1952).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65535 * 5 + 32);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::super::profile::{parse_text, tests::sample_profile, ProfileLimits};
    use super::*;

    #[test]
    fn crc_and_gzip_framing() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let gz = gzip(&data);
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        // Four blocks of at most 65535 bytes, each with a 5-byte header.
        assert_eq!(gz.len(), 10 + data.len() + 4 * 5 + 8);
        assert_eq!(gzip(&[]).len(), 10 + 5 + 8);
    }

    #[test]
    fn profile_proto_fields_a_reader_needs() {
        let p = parse_text(&sample_profile(1000, 2000, 300), 32768, ProfileLimits::default()).unwrap();
        let raw = encode_raw(&p, 32768, 1_700_000_000_000_000_000, 20_000_000_000);
        // Decode by hand the fields a reader needs: string table, samples, period.
        let fields = decode(&raw);
        let strings: Vec<String> = fields
            .iter()
            .filter(|(f, _)| *f == 6)
            .map(|(_, v)| String::from_utf8(v.bytes().to_vec()).unwrap())
            .collect();
        assert_eq!(strings[0], "");
        for s in ["objects", "count", "space", "bytes", "handler", "/srv/app.js", "set", "listOnTimeout"] {
            assert!(strings.iter().any(|x| x == s), "{s} in {strings:?}");
        }
        let samples: Vec<&Field> = fields.iter().filter(|(f, _)| *f == 2).map(|(_, v)| v).collect();
        assert_eq!(samples.len(), 4, "nodes with live bytes");
        let mut total = 0;
        for s in &samples {
            let inner = decode(s.bytes());
            let values = unpack(inner.iter().find(|(f, _)| *f == 2).unwrap().1.bytes());
            total += values[1];
        }
        assert_eq!(total, p.total_bytes());
        assert!(fields.iter().any(|(f, v)| *f == 12 && matches!(v, Field::Varint(32768))));
        // The Map's set (leaf) sample: set, handler, listOnTimeout — three locations, leaf first.
        let set = samples
            .iter()
            .map(|s| decode(s.bytes()))
            .find(|d| unpack(d.iter().find(|(f, _)| *f == 2).unwrap().1.bytes())[1] == 2000);
        assert_eq!(unpack(set.unwrap().iter().find(|(f, _)| *f == 1).unwrap().1.bytes()).len(), 3);
    }

    /// profile.proto's messages as prost declares them, to read the encoding with a real decoder.
    mod proto {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Profile {
            #[prost(message, repeated, tag = "1")]
            pub sample_type: Vec<ValueType>,
            #[prost(message, repeated, tag = "2")]
            pub sample: Vec<Sample>,
            #[prost(message, repeated, tag = "4")]
            pub location: Vec<Location>,
            #[prost(message, repeated, tag = "5")]
            pub function: Vec<Function>,
            #[prost(string, repeated, tag = "6")]
            pub string_table: Vec<String>,
            #[prost(int64, tag = "9")]
            pub time_nanos: i64,
            #[prost(int64, tag = "10")]
            pub duration_nanos: i64,
            #[prost(message, optional, tag = "11")]
            pub period_type: Option<ValueType>,
            #[prost(int64, tag = "12")]
            pub period: i64,
            #[prost(int64, tag = "14")]
            pub default_sample_type: i64,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ValueType {
            #[prost(int64, tag = "1")]
            pub r#type: i64,
            #[prost(int64, tag = "2")]
            pub unit: i64,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Sample {
            #[prost(uint64, repeated, tag = "1")]
            pub location_id: Vec<u64>,
            #[prost(int64, repeated, tag = "2")]
            pub value: Vec<i64>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Location {
            #[prost(uint64, tag = "1")]
            pub id: u64,
            #[prost(message, repeated, tag = "4")]
            pub line: Vec<Line>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Line {
            #[prost(uint64, tag = "1")]
            pub function_id: u64,
            #[prost(int64, tag = "2")]
            pub line: i64,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Function {
            #[prost(uint64, tag = "1")]
            pub id: u64,
            #[prost(int64, tag = "2")]
            pub name: i64,
            #[prost(int64, tag = "4")]
            pub filename: i64,
            #[prost(int64, tag = "5")]
            pub start_line: i64,
        }
    }

    #[test]
    fn prost_reads_the_profile() {
        use prost::Message;
        let p = parse_text(&sample_profile(1000, 2000, 300), 32768, ProfileLimits::default()).unwrap();
        let decoded = proto::Profile::decode(&encode_raw(&p, 32768, 5, 20_000_000_000)[..]).unwrap();
        let s = |i: i64| decoded.string_table[i as usize].as_str();
        let types: Vec<(&str, &str)> = decoded.sample_type.iter().map(|t| (s(t.r#type), s(t.unit))).collect();
        assert_eq!(types, [("objects", "count"), ("space", "bytes")]);
        assert_eq!(s(decoded.default_sample_type), "space");
        assert_eq!(decoded.period, 32768);
        assert_eq!(decoded.duration_nanos, 20_000_000_000);
        assert_eq!(decoded.sample.iter().map(|x| x.value[1]).sum::<i64>() as u64, p.total_bytes());
        // Every location and function a sample names exists; the handler's stack reads leaf first.
        let name_of = |loc: u64| {
            let l = decoded.location.iter().find(|l| l.id == loc).unwrap();
            let f = decoded.function.iter().find(|f| f.id == l.line[0].function_id).unwrap();
            format!("{}@{}:{}", s(f.name), s(f.filename), l.line[0].line)
        };
        let handler = decoded.sample.iter().find(|x| x.value[1] == 1000).unwrap();
        let stack: Vec<String> = handler.location_id.iter().map(|l| name_of(*l)).collect();
        assert_eq!(stack, ["handler@/srv/app.js:10", "listOnTimeout@node:internal/timers:523"]);
        assert!(handler.value[0] > 80, "objects estimated from the samples: {}", handler.value[0]);
    }

    #[derive(Debug)]
    enum Field {
        Varint(u64),
        Bytes(Vec<u8>),
    }
    impl Field {
        fn bytes(&self) -> &[u8] {
            match self {
                Field::Bytes(b) => b,
                Field::Varint(_) => panic!("not bytes"),
            }
        }
    }

    fn read_varint(b: &[u8], i: &mut usize) -> u64 {
        let mut v = 0;
        let mut shift = 0;
        loop {
            let c = b[*i];
            *i += 1;
            v |= ((c & 0x7f) as u64) << shift;
            if c < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn decode(b: &[u8]) -> Vec<(u64, Field)> {
        let mut i = 0;
        let mut out = Vec::new();
        while i < b.len() {
            let key = read_varint(b, &mut i);
            match key & 7 {
                0 => out.push((key >> 3, Field::Varint(read_varint(b, &mut i)))),
                2 => {
                    let len = read_varint(b, &mut i) as usize;
                    out.push((key >> 3, Field::Bytes(b[i..i + len].to_vec())));
                    i += len;
                }
                w => panic!("wire type {w}"),
            }
        }
        out
    }

    fn unpack(b: &[u8]) -> Vec<u64> {
        let mut i = 0;
        let mut out = Vec::new();
        while i < b.len() {
            out.push(read_varint(b, &mut i));
        }
        out
    }
}
