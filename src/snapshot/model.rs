//! What a snapshot is reduced to for a shallow comparison: per node its id, its class (DevTools'
//! "Constructor" grouping) and its shallow size, 12 bytes a node, and per class its name. Only
//! the strings that name classes are kept: string nodes' contents (an app's secrets) never are.

use std::collections::HashMap;

use super::parse::{Meta, ParseError, Sink};

/// One node: V8's id (stable for one object across the snapshots of one process), its class
/// and its shallow size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    pub class: u32,
    pub size: u32,
}

/// A set of bits, one per index.
#[derive(Debug, Clone, Default)]
pub struct Bits(Vec<u64>);

impl Bits {
    pub fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }
    #[inline]
    pub fn set(&mut self, i: usize) {
        let w = i / 64;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// Node types whose `name` is shown (never string contents, numbers, symbols or regexp sources).
pub fn name_is_shown(node_type: &str) -> bool {
    matches!(node_type, "hidden" | "array" | "object" | "code" | "closure" | "native" | "synthetic" | "object shape")
}

/// DevTools' class of a node: objects (and native objects) by constructor name, the rest by type.
pub fn class_name(node_type: &str, name: &str) -> String {
    match node_type {
        "object" | "native" if !name.is_empty() => name.to_string(),
        "object" | "native" => "(anonymous)".to_string(),
        "hidden" => "(system)".to_string(),
        "code" => "(compiled code)".to_string(),
        t => format!("({t})"),
    }
}

/// Classes of one snapshot: (type, name index) → class index, and the names to resolve once
/// the strings are read.
#[derive(Debug, Default, Clone)]
pub struct ClassTable {
    index: HashMap<(u8, u32), u32>,
    keys: Vec<(u8, u32)>,
    /// Per node type: whether its class is named by the node's name.
    by_name: Vec<bool>,
    types: Vec<String>,
    pub names: Vec<String>,
}

impl ClassTable {
    pub fn new(meta: &Meta) -> ClassTable {
        ClassTable {
            by_name: meta.node_types.iter().map(|t| t == "object" || t == "native").collect(),
            types: meta.node_types.clone(),
            ..ClassTable::default()
        }
    }

    #[inline]
    pub fn class_of(&mut self, ty: u32, name: u32, wanted: &mut Bits) -> Result<u32, ParseError> {
        let ty8 = u8::try_from(ty).ok().filter(|t| (*t as usize) < self.types.len());
        let ty8 = ty8.ok_or_else(|| ParseError::Meta(format!("node type {ty} not in the meta")))?;
        let key = if self.by_name[ty8 as usize] { (ty8, name) } else { (ty8, u32::MAX) };
        if let Some(&c) = self.index.get(&key) {
            return Ok(c);
        }
        if key.1 != u32::MAX {
            wanted.set(name as usize);
        }
        let c = self.keys.len() as u32;
        self.keys.push(key);
        self.index.insert(key, c);
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Names every class from the strings read.
    pub fn resolve<'s>(&mut self, string: impl Fn(u32) -> Option<&'s str>) {
        self.index = HashMap::new();
        self.names = self
            .keys
            .iter()
            .map(|&(t, n)| {
                let name = if n == u32::MAX { "" } else { string(n).unwrap_or("") };
                class_name(&self.types[t as usize], name)
            })
            .collect();
    }
}

/// A snapshot read for a shallow comparison.
#[derive(Debug, Default)]
pub struct Light {
    /// Every node, sorted by id; or, read against a base, only the nodes not in the base.
    pub entries: Vec<Entry>,
    /// Per base it was read against: which of the base's entries it holds.
    pub seen: Vec<Bits>,
    /// Read against a second base: per entry of that base held here, its class here (V8 may
    /// give a dead object's id to a new one, of another class).
    pub second_base_class: Vec<u32>,
    pub classes: ClassTable,
    /// Per class: count and shallow size.
    pub totals: Vec<(u64, u64)>,
    pub nodes: u64,
    pub edges: u64,
}

/// Whether an id is in a sorted list, and where.
#[inline]
pub fn find(entries: &[Entry], id: u32) -> Option<usize> {
    entries.binary_search_by_key(&id, |e| e.id).ok()
}

/// Reads a snapshot into a [`Light`]: every node, or (with bases) only those not in the first
/// base, marking which entries of each base it holds.
pub struct LightSink<'a> {
    pub light: Light,
    bases: Vec<&'a [Entry]>,
    wanted: Bits,
    strings: HashMap<u32, String>,
    pos: Option<(usize, usize, usize, usize)>,
}

impl<'a> LightSink<'a> {
    pub fn new(bases: Vec<&'a [Entry]>) -> Self {
        let seen = bases.iter().map(|b| Bits::new(b.len())).collect();
        let second_base_class = bases.get(1).map(|b| vec![u32::MAX; b.len()]).unwrap_or_default();
        LightSink {
            light: Light { seen, second_base_class, ..Light::default() },
            bases,
            wanted: Bits::default(),
            strings: HashMap::new(),
            pos: None,
        }
    }

    /// Records one node (also used to feed a graph's nodes through the same comparison).
    #[inline]
    pub fn observe(&mut self, id: u32, class: u32, size: u32) {
        let light = &mut self.light;
        if light.totals.len() <= class as usize {
            light.totals.resize(class as usize + 1, (0, 0));
        }
        let t = &mut light.totals[class as usize];
        t.0 += 1;
        t.1 += size as u64;
        light.nodes += 1;
        let mut in_first = false;
        for (i, base) in self.bases.iter().enumerate() {
            if let Some(at) = find(base, id) {
                light.seen[i].set(at);
                in_first |= i == 0;
                if i == 1 {
                    light.second_base_class[at] = class;
                }
            }
        }
        if !in_first {
            light.entries.push(Entry { id, class, size });
        }
    }

    /// Ends the read: entries sorted by id, classes named.
    pub fn finish(mut self) -> Light {
        self.light.entries.sort_unstable_by_key(|e| e.id);
        let strings = &self.strings;
        self.light.classes.resolve(|i| strings.get(&i).map(String::as_str));
        self.light
    }

    /// Ends a read fed by [`LightSink::observe`] with `classes`, already named.
    pub fn finish_with(mut self, classes: ClassTable) -> Light {
        self.light.entries.sort_unstable_by_key(|e| e.id);
        self.light.classes = classes;
        self.light
    }
}

impl Sink for LightSink<'_> {
    fn meta(&mut self, meta: &Meta) -> Result<(), ParseError> {
        self.light.classes = ClassTable::new(meta);
        self.pos = Some((meta.node_type, meta.node_name, meta.node_id, meta.node_self_size));
        if self.bases.is_empty() {
            self.light.entries.reserve(meta.node_count.min(1 << 26) as usize);
        }
        Ok(())
    }

    #[inline]
    fn node(&mut self, f: &[u32]) -> Result<(), ParseError> {
        let (t, n, i, s) = self.pos.expect("meta comes first");
        let class = self.light.classes.class_of(f[t], f[n], &mut self.wanted)?;
        self.observe(f[i], class, f[s]);
        Ok(())
    }

    #[inline]
    fn edge(&mut self, _: &[u32]) -> Result<(), ParseError> {
        self.light.edges += 1;
        Ok(())
    }

    fn wants_string(&mut self, index: u32) -> bool {
        self.wanted.get(index as usize)
    }

    fn string(&mut self, index: u32, value: String) {
        self.strings.insert(index, value);
    }
}
