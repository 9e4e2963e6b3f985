//! Comparing snapshots of one process as DevTools' Comparison view does: V8 gives an object the
//! same id in every snapshot of a process, so objects in the later snapshot whose ids the earlier
//! lacks are new, and the reverse deleted; both are summed per class. With three snapshots, the
//! objects allocated after the first, still alive in the second and still alive in the third
//! (memlab's definition of a leak) are summed per class too.
//!
//! Memory: a shallow comparison keeps 12 bytes per node of the first snapshot, one bit per node
//! for each later one, and 12 bytes per node new since the first; the later snapshots are
//! streamed. With retained sizes, each snapshot's graph is built in turn (the first one's without
//! labels, dropped once its per-class retained sizes are known), and the last one's kept for
//! retainer paths.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::graph::{Graph, GraphSink};
use super::model::{Bits, Entry, Light, LightSink};
use super::parse::{parse, ParseError};

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: ParseError },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("give two or three snapshots (got {0})")]
    Count(usize),
}

#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    /// Build each snapshot's graph: retained sizes and retainer paths.
    pub retained: bool,
    /// Retainer paths shown per class, for the top classes.
    pub samples: usize,
    /// Classes that get sample paths.
    pub top: usize,
}

/// One snapshot's size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotSummary {
    pub path: String,
    pub nodes: u64,
    pub edges: u64,
    pub shallow_bytes: u64,
}

/// A class's change between the first and the last snapshot.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClassDelta {
    pub constructor: String,
    /// Objects in the last snapshot that the first lacked.
    pub new_count: u64,
    /// Objects of the first snapshot gone from the last.
    pub deleted_count: u64,
    pub count_delta: i64,
    pub alloc_bytes: u64,
    pub freed_bytes: u64,
    pub size_delta: i64,
    pub count_after: u64,
    pub size_after: u64,
    /// Retained by the class's objects (each counted once) after, and its change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_delta: Option<i64>,
    /// Shortest retainer paths of a few of the new objects (with retained sizes only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
}

/// Objects of a class allocated after the first snapshot and alive in the second and third.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LeakClass {
    pub constructor: String,
    pub count: u64,
    pub shallow_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub id: u32,
    pub retained_bytes: u64,
    /// From the root: `edge node` steps.
    pub path: Vec<String>,
    /// How many of the objects sampled have a path of this shape (ids and indices aside).
    pub similar: usize,
    pub sampled: usize,
}

/// Objects of a class whose retainer paths are computed and grouped.
const PATH_SAMPLE: usize = 64;

/// A path step without what differs between objects held the same way: ids and indices.
fn path_shape(step: &str) -> String {
    let mut out = String::with_capacity(step.len());
    let mut chars = step.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub snapshots: Vec<SnapshotSummary>,
    /// First against last, growth first.
    pub classes: Vec<ClassDelta>,
    /// With three snapshots: memlab's leaks, largest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaks: Option<Vec<LeakClass>>,
    /// Ids new in the middle snapshot that name an object of another class in the last: V8 gave
    /// a dead object's id to a new one, so they are no leak (and ids were not stable).
    #[serde(skip_serializing_if = "is_zero")]
    pub leak_ids_reused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn open(path: &Path) -> Result<BufReader<File>, DiffError> {
    let f = File::open(path).map_err(|source| DiffError::Open { path: path.to_path_buf(), source })?;
    Ok(BufReader::with_capacity(1 << 16, f))
}

fn read_graph(path: &Path, labels: bool) -> Result<Graph, DiffError> {
    let mut sink = GraphSink::new(labels);
    let wrap = |source| DiffError::Parse { path: path.to_path_buf(), source };
    parse(open(path)?, &mut sink).map_err(wrap)?;
    sink.finish().map_err(wrap)
}

fn read_light(path: &Path, bases: Vec<&[Entry]>) -> Result<Light, DiffError> {
    let mut sink = LightSink::new(bases);
    parse(open(path)?, &mut sink).map_err(|source| DiffError::Parse { path: path.to_path_buf(), source })?;
    Ok(sink.finish())
}

/// A graph's nodes through the same comparison as a streamed snapshot.
fn light_of_graph(g: &Graph, bases: Vec<&[Entry]>, classes: super::model::ClassTable) -> Light {
    let mut sink = LightSink::new(bases);
    for v in 0..g.len() {
        sink.observe(g.id[v], g.class[v], g.size[v]);
    }
    let mut light = sink.finish_with(classes);
    light.edges = g.edge_count;
    light
}

fn summary(path: &Path, l: &Light) -> SnapshotSummary {
    SnapshotSummary {
        path: path.display().to_string(),
        nodes: l.nodes,
        edges: l.edges,
        shallow_bytes: l.totals.iter().map(|t| t.1).sum(),
    }
}

fn by_name(l: &Light) -> HashMap<&str, (u64, u64)> {
    let mut out: HashMap<&str, (u64, u64)> = HashMap::new();
    for (c, t) in l.totals.iter().enumerate() {
        let e = out.entry(l.classes.names[c].as_str()).or_default();
        e.0 += t.0;
        e.1 += t.1;
    }
    out
}

fn retained_by_name(g: &Graph, per_class: &[u64]) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for (c, r) in per_class.iter().enumerate() {
        *out.entry(g.classes.names[c].clone()).or_default() += r;
    }
    out
}

/// Compares two or three snapshots of one process, in the order taken.
pub fn diff(paths: &[PathBuf], opts: DiffOptions) -> Result<Report, DiffError> {
    if !(2..=3).contains(&paths.len()) {
        return Err(DiffError::Count(paths.len()));
    }
    let last_path = &paths[paths.len() - 1];
    // The first snapshot, whole.
    let (first, retained_first) = if opts.retained {
        // Only its retained sizes are shown: no labels.
        let mut g = read_graph(&paths[0], false)?;
        let dom = g.dominators();
        let per_class = g.class_retained(&dom);
        let retained = retained_by_name(&g, &per_class);
        drop(dom);
        let classes = std::mem::take(&mut g.classes);
        (light_of_graph(&g, Vec::new(), classes), Some(retained))
    } else {
        (read_light(&paths[0], Vec::new())?, None)
    };
    // The middle one: only what is new since the first.
    let middle = if paths.len() == 3 { Some(read_light(&paths[1], vec![&first.entries])?) } else { None };
    let mut bases: Vec<&[Entry]> = vec![&first.entries];
    if let Some(m) = &middle {
        bases.push(&m.entries);
    }
    // The last one: streamed, or its graph kept for retained sizes and paths.
    let (last, mut graph) = if opts.retained {
        let mut g = read_graph(last_path, true)?;
        let classes = std::mem::take(&mut g.classes);
        let light = light_of_graph(&g, bases, classes.clone());
        g.classes = classes;
        (light, Some(g))
    } else {
        (read_light(last_path, bases)?, None)
    };
    // Paths first: the dominators use the edges up.
    let retainers = graph.as_mut().map(Graph::retainers);
    let dom = graph.as_mut().map(Graph::dominators);

    let mut snapshots = vec![summary(&paths[0], &first)];
    if let Some(m) = &middle {
        snapshots.push(SnapshotSummary { path: paths[1].display().to_string(), ..summary(&paths[1], m) });
    }
    snapshots.push(summary(last_path, &last));

    // First against last.
    let mut classes: BTreeMap<String, ClassDelta> = BTreeMap::new();
    for e in &last.entries {
        let c = classes.entry(last.classes.names[e.class as usize].clone()).or_default();
        c.new_count += 1;
        c.alloc_bytes += e.size as u64;
    }
    for (i, e) in first.entries.iter().enumerate() {
        if !last.seen[0].get(i) {
            let c = classes.entry(first.classes.names[e.class as usize].clone()).or_default();
            c.deleted_count += 1;
            c.freed_bytes += e.size as u64;
        }
    }
    for (name, (count, size)) in by_name(&last) {
        let c = classes.entry(name.to_string()).or_default();
        c.count_after = count;
        c.size_after = size;
    }
    let retained_last = graph.as_ref().zip(dom.as_ref()).map(|(g, d)| retained_by_name(g, &g.class_retained(d)));
    if let (Some(before), Some(after)) = (&retained_first, &retained_last) {
        for name in before.keys().chain(after.keys()) {
            let c = classes.entry(name.clone()).or_default();
            let (b, a) = (before.get(name).copied().unwrap_or(0), after.get(name).copied().unwrap_or(0));
            c.retained_after = Some(a);
            c.retained_delta = Some(a as i64 - b as i64);
        }
    }
    let mut classes: Vec<ClassDelta> = classes
        .into_iter()
        .map(|(name, mut c)| {
            c.constructor = name;
            c.count_delta = c.new_count as i64 - c.deleted_count as i64;
            c.size_delta = c.alloc_bytes as i64 - c.freed_bytes as i64;
            c
        })
        .filter(|c| c.new_count > 0 || c.deleted_count > 0 || c.retained_delta.is_some_and(|d| d != 0))
        .collect();
    classes.sort_by(|a, b| {
        let key = |c: &ClassDelta| (c.retained_delta.unwrap_or(c.size_delta), c.size_delta, c.count_delta);
        key(b).cmp(&key(a)).then_with(|| a.constructor.cmp(&b.constructor))
    });

    // memlab's leaks: new in the middle one, still there in the last. An id is one object only
    // while its class stays: on large snapshots V8 was seen to give thousands of dead objects'
    // ids to new objects of other classes (a LeakedRecord's to a closure), which memlab counts
    // as leaks under the last snapshot's class.
    let mut leak_ids_reused = 0;
    let leaked: Option<Vec<Entry>> = middle.as_ref().map(|m| {
        let same_object = |i: usize, e: &Entry| {
            let later = last.second_base_class[i] as usize;
            last.classes.names.get(later) == Some(&m.classes.names[e.class as usize])
        };
        let held = m.entries.iter().enumerate().filter(|(i, _)| last.seen[1].get(*i));
        let (kept, reused): (Vec<_>, Vec<_>) = held.partition(|(i, e)| same_object(*i, e));
        leak_ids_reused = reused.len() as u64;
        kept.into_iter().map(|(_, e)| *e).collect()
    });
    let mut leaks: Option<Vec<LeakClass>> = leaked.as_ref().map(|leaked| {
        let m = middle.as_ref().expect("leaks need a middle snapshot");
        let mut per: BTreeMap<&str, LeakClass> = BTreeMap::new();
        for e in leaked {
            let c = per.entry(m.classes.names[e.class as usize].as_str()).or_default();
            c.count += 1;
            c.shallow_bytes += e.size as u64;
        }
        per.into_iter().map(|(name, c)| LeakClass { constructor: name.to_string(), ..c }).collect()
    });

    if let (Some(g), Some(dom), Some(parents)) = (&graph, &dom, &retainers) {
        // Node indices of the objects that may be sampled, and the leaked set in the graph.
        let candidates: HashSet<u32> = match &leaked {
            Some(l) => l.iter().map(|e| e.id).collect(),
            None => last.entries.iter().map(|e| e.id).collect(),
        };
        let mut index: HashMap<u32, usize> = HashMap::with_capacity(candidates.len());
        for v in 0..g.len() {
            if candidates.contains(&g.id[v]) {
                index.insert(g.id[v], v);
            }
        }
        drop(candidates);
        // Paths of up to PATH_SAMPLE objects spread over the class, grouped by their shape (ids
        // and indices left out): the most common shapes first, as memlab clusters its traces.
        let sample = |ids: Vec<u32>| -> Vec<Sample> {
            let k = PATH_SAMPLE.min(ids.len());
            let mut shapes: HashMap<Vec<String>, Sample> = HashMap::new();
            for i in 0..k {
                let id = ids[i * ids.len() / k];
                let Some(&v) = index.get(&id) else { continue };
                let Some(path) = g.path(parents, v) else { continue };
                let shape = path.iter().map(|step| path_shape(step)).collect();
                shapes
                    .entry(shape)
                    .or_insert_with(|| Sample { id, retained_bytes: dom.retained[v], path, similar: 0, sampled: k })
                    .similar += 1;
            }
            let mut out: Vec<Sample> = shapes.into_values().collect();
            out.sort_by(|a, b| b.similar.cmp(&a.similar).then(a.id.cmp(&b.id)));
            out.truncate(opts.samples);
            out
        };
        if let Some(leaks) = &mut leaks {
            let leaked = leaked.as_ref().expect("with leaks");
            let mut set = Bits::new(g.len());
            for e in leaked {
                if let Some(&v) = index.get(&e.id) {
                    set.set(v);
                }
            }
            let per_class = retained_by_name(g, &g.class_retained_of(dom, Some(&set)));
            for c in leaks.iter_mut() {
                c.retained_bytes = Some(per_class.get(&c.constructor).copied().unwrap_or(0));
            }
            sort_leaks(leaks);
            let names = &middle.as_ref().expect("with leaks").classes.names;
            for c in leaks.iter_mut().take(opts.top) {
                let ids = leaked.iter().filter(|e| names[e.class as usize] == c.constructor).map(|e| e.id).collect();
                c.samples = sample(ids);
            }
        } else {
            for c in classes.iter_mut().take(opts.top).filter(|c| c.new_count > 0) {
                let ids = last
                    .entries
                    .iter()
                    .filter(|e| last.classes.names[e.class as usize] == c.constructor)
                    .map(|e| e.id)
                    .collect();
                c.samples = sample(ids);
            }
        }
    }
    if let Some(leaks) = &mut leaks {
        sort_leaks(leaks);
    }
    Ok(Report { snapshots, classes, leaks, leak_ids_reused })
}

fn sort_leaks(leaks: &mut [LeakClass]) {
    leaks.sort_by(|a, b| {
        let key = |c: &LeakClass| (c.retained_bytes.unwrap_or(c.shallow_bytes), c.shallow_bytes, c.count);
        key(b).cmp(&key(a)).then_with(|| a.constructor.cmp(&b.constructor))
    });
}

/// Bytes for people: `1.5 MiB`, signed when asked.
pub fn bytes(n: i64, signed: bool) -> String {
    let sign = if n < 0 {
        "-"
    } else if signed && n > 0 {
        "+"
    } else {
        ""
    };
    let a = n.unsigned_abs() as f64;
    let s = if a < 1024.0 {
        format!("{a} B")
    } else if a < 1024.0 * 1024.0 {
        format!("{:.1} KiB", a / 1024.0)
    } else if a < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", a / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", a / 1024.0 / 1024.0 / 1024.0)
    };
    format!("{sign}{s}")
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i == 0 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

fn render_samples(out: &mut String, constructor: &str, samples: &[Sample]) {
    for s in samples {
        out.push_str(&format!(
            "  {} @{} (retains {}; {} of {} sampled are held this way):\n    {}\n",
            cut(constructor, 60),
            s.id,
            bytes(s.retained_bytes as i64, false),
            s.similar,
            s.sampled,
            s.path.join(" → ")
        ));
    }
}

/// The report as tables: the comparison's top `top` classes, the leaks, the sample paths.
pub fn render_text(report: &Report, top: usize) -> String {
    let mut out = String::new();
    for (i, s) in report.snapshots.iter().enumerate() {
        out.push_str(&format!(
            "snapshot {}: {} ({} nodes, {} edges, {})\n",
            (b'A' + i as u8) as char,
            s.path,
            s.nodes,
            s.edges,
            bytes(s.shallow_bytes as i64, false)
        ));
    }
    let last = (b'A' + report.snapshots.len() as u8 - 1) as char;
    let with_retained = report.classes.iter().any(|c| c.retained_delta.is_some());
    out.push_str(&format!("\nComparison A → {last}, by {} growth:\n", if with_retained { "retained" } else { "size" }));
    let mut header = vec!["Constructor", "# New", "# Deleted", "# Delta", "Alloc. size", "Freed size", "Size delta"];
    if with_retained {
        header.push("Retained delta");
    }
    let rows: Vec<Vec<String>> = report
        .classes
        .iter()
        .take(top)
        .map(|c| {
            let mut r = vec![
                cut(&c.constructor, 60),
                c.new_count.to_string(),
                c.deleted_count.to_string(),
                signed(c.count_delta),
                bytes(c.alloc_bytes as i64, false),
                bytes(c.freed_bytes as i64, false),
                bytes(c.size_delta, true),
            ];
            if with_retained {
                r.push(c.retained_delta.map(|d| bytes(d, true)).unwrap_or_default());
            }
            r
        })
        .collect();
    out.push_str(&table(&header, &rows));
    if report.classes.len() > top {
        out.push_str(&format!("({} more classes changed; --top to see more)\n", report.classes.len() - top));
    }
    let paths: Vec<&ClassDelta> = report.classes.iter().filter(|c| !c.samples.is_empty()).collect();
    if !paths.is_empty() {
        out.push_str("\nRetainer paths of new objects (shortest, from the root):\n");
        for c in paths {
            render_samples(&mut out, &c.constructor, &c.samples);
        }
    }
    if let Some(leaks) = &report.leaks {
        out.push_str("\nLeaks (allocated after A, alive in B and still alive in C), largest first:\n");
        let mut header = vec!["Constructor", "Count", "Shallow size"];
        if with_retained {
            header.push("Retained size");
        }
        let rows: Vec<Vec<String>> = leaks
            .iter()
            .take(top)
            .map(|c| {
                let mut r = vec![cut(&c.constructor, 60), c.count.to_string(), bytes(c.shallow_bytes as i64, false)];
                if with_retained {
                    r.push(c.retained_bytes.map(|b| bytes(b as i64, false)).unwrap_or_default());
                }
                r
            })
            .collect();
        out.push_str(&table(&header, &rows));
        if leaks.len() > top {
            out.push_str(&format!("({} more classes; --top to see more)\n", leaks.len() - top));
        }
        if report.leak_ids_reused > 0 {
            out.push_str(&format!(
                "({} ids new in B name an object of another class in C: V8 gave them to new objects, so \
                 they are left out, and these leaks are unsure: trust the comparison A → C)\n",
                report.leak_ids_reused
            ));
        }
        let paths: Vec<&LeakClass> = leaks.iter().filter(|c| !c.samples.is_empty()).collect();
        if !paths.is_empty() {
            out.push_str("\nRetainer paths of leaked objects (shortest, from the root):\n");
            for c in paths {
                render_samples(&mut out, &c.constructor, &c.samples);
            }
        }
    }
    if !with_retained {
        out.push_str("\n(--retained for retained sizes and the retainer paths of new objects)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse::tests::Builder;
    use super::*;

    /// A process's heap at three times: a Map cache that gains an entry (an Array holding an
    /// elements store) per step, and churn: Temp objects that live one snapshot.
    fn heap(step: u32) -> String {
        let mut b = Builder::new();
        let root = b.node("synthetic", "", 1, 0);
        let global = b.node("object", "global", 3, 40);
        let map = b.node("object", "Map", 5, 32);
        let table = b.node("array", "(object elements)", 7, 100 + 50 * step);
        b.edge(root, "shortcut", "global", global);
        b.edge(global, "property", "leakyCache", map);
        b.edge(map, "internal", "table", table);
        let mut values = Vec::new();
        for k in 0..=step {
            for j in 0..10 {
                let id = 1001 + 20 * (10 * k + j);
                let v = b.node("object", "Array", id, 16);
                let el = b.node("array", "(object elements)", id + 2, 2408);
                values.push(v);
                b.edge(v, "internal", "elements", el);
            }
        }
        for (i, &v) in values.iter().enumerate() {
            b.edge(table, "element", &i.to_string(), v);
        }
        // Churn: ten times the leak, gone by the next snapshot.
        for j in 0..100 {
            let t = b.node("object", "Temp", 50_001 + 1000 * step + 2 * j, 64);
            b.edge(global, "weak", "recent", t);
            let _ = t;
        }
        // Edges must be grouped by source: Builder sorts them.
        b.json()
    }

    fn files(dir: &Path, steps: &[u32]) -> Vec<PathBuf> {
        steps
            .iter()
            .map(|&s| {
                let p = dir.join(format!("{s}.heapsnapshot"));
                std::fs::write(&p, heap(s)).unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn two_snapshots_shallow() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), &[0, 1]);
        let r = diff(&paths, DiffOptions { retained: false, samples: 2, top: 5 }).unwrap();
        let top = &r.classes[0];
        assert_eq!(top.constructor, "(array)");
        assert_eq!((top.new_count, top.deleted_count), (10, 0));
        // As in DevTools, the size delta is that of new and deleted objects (V8 grows a store by
        // allocating a new one).
        assert_eq!(top.size_delta, 10 * 2408);
        let array = r.classes.iter().find(|c| c.constructor == "Array").unwrap();
        assert_eq!((array.count_delta, array.size_delta), (10, 160));
        let temp = r.classes.iter().find(|c| c.constructor == "Temp").unwrap();
        assert_eq!((temp.new_count, temp.deleted_count, temp.count_delta), (100, 100, 0));
        assert!(r.leaks.is_none());
        assert!(r.classes.iter().all(|c| c.samples.is_empty()));
        let text = render_text(&r, 5);
        assert!(text.contains("Comparison A → B, by size growth"), "{text}");
    }

    #[test]
    fn three_snapshots_with_retained_sizes_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), &[0, 1, 2]);
        let r = diff(&paths, DiffOptions { retained: true, samples: 1, top: 3 }).unwrap();
        // Retained: the Map's table retains every value, and each new Array its store.
        let top = &r.classes[0];
        assert_eq!(top.constructor, "(array)");
        assert_eq!(top.retained_delta, Some(100 + 20 * (16 + 2408)));
        let array = r.classes.iter().find(|c| c.constructor == "Array").unwrap();
        assert_eq!(array.retained_delta, Some(20 * (16 + 2408)));
        let leaks = r.leaks.as_ref().unwrap();
        assert_eq!(leaks[0].constructor, "Array");
        assert_eq!((leaks[0].count, leaks[0].retained_bytes), (10, Some(10 * (16 + 2408))));
        assert!(!leaks.iter().any(|c| c.constructor == "Temp"), "churn never leaks");
        assert_eq!((leaks[0].samples[0].similar, leaks[0].samples[0].sampled), (10, 10), "one shape");
        let path = leaks[0].samples[0].path.join(" → ");
        assert!(
            path.starts_with("(root) → global global @3 → .leakyCache Map @5 → table (object elements) @7 → ["),
            "{path}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["leaks"][0]["constructor"], "Array");
        assert_eq!(json["snapshots"].as_array().unwrap().len(), 3);
        let text = render_text(&r, 3);
        assert!(text.contains("Leaks (allocated after A"), "{text}");
        assert!(text.contains(".leakyCache Map @5"), "{text}");
    }

    #[test]
    fn two_snapshots_with_retained_sizes_sample_the_new_objects() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), &[0, 2]);
        let r = diff(&paths, DiffOptions { retained: true, samples: 1, top: 10 }).unwrap();
        let array = r.classes.iter().find(|c| c.constructor == "Array").unwrap();
        assert_eq!(array.new_count, 20);
        let s = &array.samples[0];
        assert_eq!((s.similar, s.sampled), (20, 20));
        assert!(s.path.join(" → ").contains(".leakyCache Map @5"), "{:?}", s.path);
        assert!(r.classes.iter().find(|c| c.constructor == "Temp").unwrap().retained_delta == Some(0));
    }

    #[test]
    fn path_shapes_ignore_ids_and_indices() {
        assert_eq!(path_shape("[3] Array @1234"), "[#] Array @#");
        assert_eq!(path_shape("16392 Array @163073"), "# Array @#");
        assert_eq!(path_shape(".leakyCache Map @5"), ".leakyCache Map @#");
        assert_eq!(bytes(1536, true), "+1.5 KiB");
        assert_eq!(bytes(-10, true), "-10 B");
        assert_eq!(bytes(3 << 30, false), "3.00 GiB");
    }

    /// V8 gave a dead object's id to a new object of another class: not a leak.
    #[test]
    fn an_id_of_another_class_in_the_last_snapshot_is_no_leak() {
        let snapshot = |held: &[(&str, u32)]| {
            let mut b = Builder::new();
            let root = b.node("synthetic", "", 1, 0);
            let global = b.node("object", "global", 3, 40);
            b.edge(root, "shortcut", "global", global);
            for (i, &(class, id)) in held.iter().enumerate() {
                let o = b.node("object", class, id, 24);
                b.edge(global, "element", &i.to_string(), o);
            }
            b.json()
        };
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> =
            [snapshot(&[]), snapshot(&[("Kept", 101), ("Dies", 103)]), snapshot(&[("Kept", 101), ("Other", 103)])]
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let p = dir.path().join(format!("{i}.heapsnapshot"));
                    std::fs::write(&p, text).unwrap();
                    p
                })
                .collect();
        for retained in [false, true] {
            let r = diff(&paths, DiffOptions { retained, samples: 1, top: 3 }).unwrap();
            let leaks: Vec<(&str, u64)> =
                r.leaks.as_ref().unwrap().iter().map(|c| (c.constructor.as_str(), c.count)).collect();
            assert_eq!(leaks, [("Kept", 1)]);
            assert_eq!(r.leak_ids_reused, 1);
            assert!(render_text(&r, 3).contains("(1 ids new in B name an object of another class in C"));
        }
    }

    #[test]
    fn identical_snapshots_show_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.heapsnapshot");
        std::fs::write(&a, heap(1)).unwrap();
        let r = diff(&[a.clone(), a.clone(), a], DiffOptions { retained: true, samples: 1, top: 3 }).unwrap();
        assert!(r.classes.is_empty(), "{:?}", r.classes);
        assert!(r.leaks.unwrap().is_empty());
    }

    #[test]
    fn a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.heapsnapshot");
        std::fs::write(&bad, "{\"snapshot\":").unwrap();
        let e = diff(&[bad.clone(), bad.clone()], DiffOptions { retained: false, samples: 1, top: 1 }).unwrap_err();
        assert!(e.to_string().contains("bad.heapsnapshot"), "{e}");
        assert!(diff(std::slice::from_ref(&bad), DiffOptions { retained: false, samples: 1, top: 1 }).is_err());
    }
}
