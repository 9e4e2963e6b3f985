//! A JSON reader without recursion, for replies nested deeper than `serde_json` allows: V8 nests a
//! sampling profile's tree one object and one array per stack frame, up to 128 frames, which is
//! past `serde_json`'s nesting limit of 128. It builds `serde_json::Value`s with an explicit stack
//! and refuses input past a nesting depth and a count of values, so a hostile reply costs bounded
//! memory and no stack.

use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at byte {at}: {what}")]
pub struct JsonError {
    pub at: usize,
    pub what: &'static str,
}

/// How much a document may hold.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimits {
    /// Deepest nesting of objects and arrays.
    pub max_depth: usize,
    /// Values of any kind (each object, array, string, number, literal).
    pub max_values: usize,
}

enum Open {
    Array(Vec<Value>),
    /// The object so far and the key whose value is being read.
    Object(Map<String, Value>, Option<String>),
}

/// Parses one JSON document.
pub fn parse(text: &str, limits: JsonLimits) -> Result<Value, JsonError> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut stack: Vec<Open> = Vec::new();
    let mut values = 0usize;
    let err = |at: usize, what: &'static str| JsonError { at, what };
    loop {
        skip_ws(b, &mut i);
        // Inside an object, a key comes first (or the end).
        if let Some(Open::Object(map, key @ None)) = stack.last_mut() {
            if b.get(i) == Some(&b'}') && map.is_empty() {
                i += 1;
                let Some(Open::Object(map, _)) = stack.pop() else { unreachable!() };
                let v = Value::Object(map);
                if let Some(done) = close_value(&mut stack, v, b, &mut i)? {
                    return finish(b, i, done);
                }
                continue;
            }
            if b.get(i) != Some(&b'"') {
                return Err(err(i, "expected a key"));
            }
            let k = read_string(text, &mut i)?;
            skip_ws(b, &mut i);
            if b.get(i) != Some(&b':') {
                return Err(err(i, "expected ':'"));
            }
            i += 1;
            *key = Some(k);
            continue;
        }
        if let Some(Open::Array(items)) = stack.last_mut() {
            if b.get(i) == Some(&b']') && items.is_empty() {
                i += 1;
                let Some(Open::Array(items)) = stack.pop() else { unreachable!() };
                if let Some(done) = close_value(&mut stack, Value::Array(items), b, &mut i)? {
                    return finish(b, i, done);
                }
                continue;
            }
        }
        values += 1;
        if values > limits.max_values {
            return Err(err(i, "too many values"));
        }
        let v = match b.get(i) {
            Some(b'{') | Some(b'[') => {
                if stack.len() >= limits.max_depth {
                    return Err(err(i, "nested too deep"));
                }
                stack.push(if b[i] == b'{' { Open::Object(Map::new(), None) } else { Open::Array(Vec::new()) });
                i += 1;
                continue;
            }
            Some(b'"') => Value::String(read_string(text, &mut i)?),
            Some(b't') if b[i..].starts_with(b"true") => {
                i += 4;
                Value::Bool(true)
            }
            Some(b'f') if b[i..].starts_with(b"false") => {
                i += 5;
                Value::Bool(false)
            }
            Some(b'n') if b[i..].starts_with(b"null") => {
                i += 4;
                Value::Null
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                let n: Number = serde_json::from_str(&text[start..i]).map_err(|_| err(start, "bad number"))?;
                Value::Number(n)
            }
            _ => return Err(err(i, "expected a value")),
        };
        if let Some(done) = close_value(&mut stack, v, b, &mut i)? {
            return finish(b, i, done);
        }
    }
}

fn finish(b: &[u8], mut i: usize, v: Value) -> Result<Value, JsonError> {
    skip_ws(b, &mut i);
    if i != b.len() {
        return Err(JsonError { at: i, what: "text after the document" });
    }
    Ok(v)
}

/// Puts a finished value into its container, then reads the separator; closes containers that
/// end. Returns the document when the outermost value is complete.
fn close_value(stack: &mut Vec<Open>, mut v: Value, b: &[u8], i: &mut usize) -> Result<Option<Value>, JsonError> {
    loop {
        let Some(top) = stack.last_mut() else { return Ok(Some(v)) };
        skip_ws(b, i);
        let close = match top {
            Open::Array(items) => {
                items.push(v);
                b']'
            }
            Open::Object(map, key) => {
                let k = key.take().expect("a value inside an object follows its key");
                map.insert(k, v);
                b'}'
            }
        };
        match b.get(*i) {
            Some(b',') => {
                *i += 1;
                return Ok(None);
            }
            Some(c) if *c == close => {
                *i += 1;
                v = match stack.pop().expect("non-empty") {
                    Open::Array(items) => Value::Array(items),
                    Open::Object(map, _) => Value::Object(map),
                };
            }
            _ => return Err(JsonError { at: *i, what: "expected ',' or the container's end" }),
        }
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
        *i += 1;
    }
}

/// Reads a string starting at its opening quote; escapes are decoded by `serde_json`.
fn read_string(text: &str, i: &mut usize) -> Result<String, JsonError> {
    let b = text.as_bytes();
    let start = *i;
    let mut j = start + 1;
    let mut escaped = false;
    while j < b.len() {
        match b[j] {
            b'\\' => {
                escaped = true;
                j += 2;
                continue;
            }
            b'"' => break,
            _ => j += 1,
        }
    }
    if j >= b.len() {
        return Err(JsonError { at: start, what: "unterminated string" });
    }
    *i = j + 1;
    if !escaped {
        let s = &text[start + 1..j];
        if s.bytes().any(|c| c < 0x20) {
            return Err(JsonError { at: start, what: "control character in a string" });
        }
        return Ok(s.to_string());
    }
    serde_json::from_str(&text[start..=j]).map_err(|_| JsonError { at: start, what: "bad string" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: JsonLimits = JsonLimits { max_depth: 1000, max_values: 1_000_000 };

    #[test]
    fn reads_what_serde_json_reads() {
        for doc in [
            r#"{"a":[1,2.5,-3e2,{"b":null,"c":true,"d":false}],"e":"x\"y\\z\u00e9","f":{},"g":[]}"#,
            " [ ] ",
            r#""plain""#,
            "0",
            r#"{"id":1,"result":{"profile":{"head":{"children":[]},"samples":[]}}}"#,
        ] {
            assert_eq!(parse(doc, L).unwrap(), serde_json::from_str::<Value>(doc).unwrap(), "{doc}");
        }
    }

    #[test]
    fn reads_nesting_deeper_than_serde_json_allows() {
        let depth = 400;
        let doc = "[".repeat(depth) + &"]".repeat(depth);
        assert!(serde_json::from_str::<Value>(&doc).is_err());
        let mut v = &parse(&doc, L).unwrap();
        let mut seen = 1;
        while let Some(inner) = v.as_array().and_then(|a| a.first()) {
            v = inner;
            seen += 1;
        }
        assert_eq!(seen, depth);
    }

    #[test]
    fn refuses_garbage_and_excess() {
        for bad in ["", "[", "{", "[1,]", "{\"a\"}", "{\"a\":1,}", "[1 2]", "tru", "\"abc", "[1]x", "{1:2}", "\"a\nb\""]
        {
            assert!(parse(bad, L).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(11) + &"]".repeat(11);
        assert_eq!(parse(&deep, JsonLimits { max_depth: 10, max_values: 100 }).unwrap_err().what, "nested too deep");
        assert_eq!(
            parse("[1,2,3,4]", JsonLimits { max_depth: 10, max_values: 4 }).unwrap_err().what,
            "too many values"
        );
    }
}
