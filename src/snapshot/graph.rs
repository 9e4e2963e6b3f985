//! A snapshot's whole object graph, for retained sizes and retainer paths: nodes and strong edges
//! as flat arrays (16 bytes a node and 4 an edge, plus 5 a node and 5 an edge where paths are
//! shown), the dominator tree (Cooper, Harvey and Kennedy's iterative algorithm over a postorder,
//! with V8's conventions: node 0 is the root, weak edges do not retain), retained sizes, and
//! shortest retainer paths from the root.
//!
//! Memory is what `diff --retained` is judged by, so the graph gives its edges up as it goes:
//! retainer paths keep one edge's label per node, and the dominators turn the edges into
//! predecessor lists.

use super::model::{name_is_shown, Bits, ClassTable};
use super::parse::{Meta, ParseError, Sink};

const NONE: u32 = u32::MAX;

/// The strings a graph keeps, by index, in one buffer: a string costs its bytes and 8 more,
/// where a map of `String`s cost about 80 (hundreds of thousands of property names).
#[derive(Debug, Default)]
pub struct Strings {
    /// Snapshot string indices, ascending (strings are read in order).
    index: Vec<u32>,
    /// Where each string ends in `bytes`.
    end: Vec<u32>,
    bytes: String,
}

impl Strings {
    fn push(&mut self, index: u32, value: &str) {
        debug_assert!(self.index.last().is_none_or(|&last| last < index));
        self.index.push(index);
        self.bytes.push_str(value);
        // Over 4 GiB of names is far beyond any snapshot: cut there rather than wrap.
        self.end.push(u32::try_from(self.bytes.len()).unwrap_or(u32::MAX));
    }

    pub fn get(&self, index: u32) -> Option<&str> {
        let at = self.index.binary_search(&index).ok()?;
        let start = if at == 0 { 0 } else { self.end[at - 1] as usize };
        self.bytes.get(start..self.end[at] as usize)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Graph {
    pub node_types: Vec<String>,
    pub edge_types: Vec<String>,
    /// Node type and name: read for labels only (empty otherwise).
    pub ty: Vec<u8>,
    pub name: Vec<u32>,
    pub id: Vec<u32>,
    pub size: Vec<u32>,
    pub class: Vec<u32>,
    /// Node i's edges are `first_edge[i]..first_edge[i + 1]`; only strong edges are kept (weak
    /// ones retain nothing and are on no retainer path). Emptied by [`Graph::dominators`].
    pub first_edge: Vec<u32>,
    /// Edge type and name: read for labels only, and given up by [`Graph::retainers`].
    pub edge_ty: Vec<u8>,
    pub edge_name: Vec<u32>,
    /// Target node index. Emptied by [`Graph::dominators`].
    pub edge_to: Vec<u32>,
    /// Edges in the snapshot, weak ones included.
    pub edge_count: u64,
    pub classes: ClassTable,
    pub strings: Strings,
    /// Edge types whose name is an index, not a string.
    indexed: Vec<bool>,
}

pub struct GraphSink {
    pub graph: Graph,
    labels: bool,
    wanted: Bits,
    node_width: u32,
    pos: (usize, usize, usize, usize, usize),
    epos: (usize, usize, usize),
    shown: Vec<bool>,
    weak: u8,
    /// The node whose edges are being read: `first_edge` holds the snapshot's edge counts (weak
    /// edges included) up to it and the strong edges kept before it.
    source: usize,
}

impl GraphSink {
    /// A reader of the graph; with `labels`, also of what labels nodes and edges on retainer
    /// paths (node types and names, edge types and names, and their strings). Without, only
    /// class names are kept: enough for retained sizes per class.
    pub fn new(labels: bool) -> GraphSink {
        GraphSink {
            graph: Graph::default(),
            labels,
            wanted: Bits::default(),
            node_width: 1,
            pos: (0, 0, 0, 0, 0),
            epos: (0, 0, 0),
            shown: Vec::new(),
            weak: u8::MAX,
            source: 0,
        }
    }

    /// Ends `first_edge[v + 1]` of every node before `node` at the strong edges kept so far.
    fn close_nodes_before(&mut self, node: usize) {
        let g = &mut self.graph;
        let kept = g.edge_to.len() as u32;
        while self.source < node {
            self.source += 1;
            g.first_edge[self.source] = kept;
        }
    }

    /// Checks the graph read and names its classes.
    pub fn finish(mut self) -> Result<Graph, ParseError> {
        let n = self.graph.id.len();
        if n == 0 {
            return Err(ParseError::Meta("a snapshot without nodes".into()));
        }
        if self.graph.first_edge[n] as u64 != self.graph.edge_count {
            return Err(ParseError::Meta("the nodes' edge counts do not add up to the edges".into()));
        }
        self.close_nodes_before(n);
        let g = &mut self.graph;
        if g.edge_to.iter().any(|&t| t as usize >= n) {
            return Err(ParseError::Meta("an edge to a node that does not exist".into()));
        }
        let strings = &g.strings;
        g.classes.resolve(|i| strings.get(i));
        Ok(self.graph)
    }
}

impl Sink for GraphSink {
    fn meta(&mut self, meta: &Meta) -> Result<(), ParseError> {
        let g = &mut self.graph;
        g.classes = ClassTable::new(meta);
        g.node_types = meta.node_types.clone();
        g.edge_types = meta.edge_types.clone();
        g.indexed = meta.edge_types.iter().map(|t| t == "element" || t == "hidden").collect();
        self.weak = meta.edge_type_index("weak").unwrap_or(u8::MAX);
        self.shown = meta.node_types.iter().map(|t| name_is_shown(t)).collect();
        self.node_width = meta.node_fields.len() as u32;
        self.pos = (meta.node_type, meta.node_name, meta.node_id, meta.node_self_size, meta.node_edge_count);
        self.epos = (meta.edge_type, meta.edge_name, meta.edge_to);
        let nodes = meta.node_count.min(1 << 27) as usize;
        let edges = meta.edge_count.min(1 << 28) as usize;
        if self.labels {
            g.ty.reserve(nodes);
            g.name.reserve(nodes);
            g.edge_ty.reserve(edges);
            g.edge_name.reserve(edges);
        }
        g.id.reserve(nodes);
        g.size.reserve(nodes);
        g.class.reserve(nodes);
        g.first_edge.reserve(nodes + 1);
        g.first_edge.push(0);
        g.edge_to.reserve(edges);
        Ok(())
    }

    fn node(&mut self, f: &[u32]) -> Result<(), ParseError> {
        let (t, n, i, s, e) = self.pos;
        let g = &mut self.graph;
        let class = g.classes.class_of(f[t], f[n], &mut self.wanted)?;
        if self.labels {
            if self.shown[f[t] as usize] {
                self.wanted.set(f[n] as usize);
            }
            g.ty.push(f[t] as u8);
            g.name.push(f[n]);
        }
        g.id.push(f[i]);
        g.size.push(f[s]);
        g.class.push(class);
        // The snapshot's counts for now: `edge` turns them into kept ones as it passes a node.
        let last = *g.first_edge.last().expect("starts with 0");
        let next = last.checked_add(f[e]).ok_or_else(|| ParseError::Meta("more than 2^32 edges".into()))?;
        g.first_edge.push(next);
        Ok(())
    }

    fn edge(&mut self, f: &[u32]) -> Result<(), ParseError> {
        let (t, n, to) = self.epos;
        let ty = u8::try_from(f[t]).ok().filter(|t| (*t as usize) < self.graph.edge_types.len());
        let ty = ty.ok_or_else(|| ParseError::Meta(format!("edge type {} not in the meta", f[t])))?;
        if f[to] % self.node_width != 0 {
            return Err(ParseError::Meta("an edge's to_node is not a node's offset".into()));
        }
        // This edge's source: the first node whose edges (as counted in the snapshot) end after it.
        let at = self.graph.edge_count;
        let nodes = self.graph.id.len();
        let mut source = self.source;
        while source < nodes && self.graph.first_edge[source + 1] as u64 <= at {
            source += 1;
        }
        if source == nodes {
            return Err(ParseError::Meta("more edges than the nodes' edge counts".into()));
        }
        self.close_nodes_before(source);
        let g = &mut self.graph;
        g.edge_count += 1;
        if ty == self.weak {
            return Ok(());
        }
        if self.labels {
            if !g.indexed[ty as usize] {
                self.wanted.set(f[n] as usize);
            }
            g.edge_ty.push(ty);
            g.edge_name.push(f[n]);
        }
        g.edge_to.push(f[to] / self.node_width);
        Ok(())
    }

    fn wants_string(&mut self, index: u32) -> bool {
        self.wanted.get(index as usize)
    }

    fn string(&mut self, index: u32, value: String) {
        self.graph.strings.push(index, &value);
    }
}

/// The dominator tree and retained sizes of a graph.
#[derive(Debug)]
pub struct Dominators {
    /// Node index → its immediate dominator (the root's is itself; `u32::MAX` if unreachable).
    pub idom: Vec<u32>,
    /// Node index → retained size (its shallow size if unreachable).
    pub retained: Vec<u64>,
}

/// Shortest retainer paths: per node, the node and edge a breadth-first walk from the root first
/// reached it by (`u32::MAX` for the root and unreachable nodes), with that edge's label.
#[derive(Debug)]
pub struct Retainers {
    parent: Vec<u32>,
    edge_ty: Vec<u8>,
    edge_name: Vec<u32>,
}

/// How a depth-first walk meets a node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// First reached: say whether to walk into it (no if it was seen already).
    Enter,
    /// Every node below it done.
    Leave,
}

/// Depth-first from `root` over the lists `to[first[v]..first[v + 1]]`, with one explicit stack
/// (heap graphs are deeper than a thread's stack): `at(v, Step::Enter)` decides whether to
/// walk into `v`, `at(v, Step::Leave)` is told when it is done.
fn depth_first(first: &[u32], to: &[u32], root: u32, mut at: impl FnMut(u32, Step) -> bool) {
    if !at(root, Step::Enter) {
        return;
    }
    let mut stack: Vec<(u32, u32)> = vec![(root, first[root as usize])];
    while let Some(top) = stack.last_mut() {
        let v = top.0;
        let end = first[v as usize + 1];
        let mut next = None;
        while top.1 < end {
            let w = to[top.1 as usize];
            top.1 += 1;
            if at(w, Step::Enter) {
                next = Some(w);
                break;
            }
        }
        match next {
            Some(w) => stack.push((w, first[w as usize])),
            None => {
                at(v, Step::Leave);
                stack.pop();
            }
        }
    }
}

impl Graph {
    pub fn len(&self) -> usize {
        self.id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    #[inline]
    fn edges(&self, node: usize) -> std::ops::Range<usize> {
        self.first_edge[node] as usize..self.first_edge[node + 1] as usize
    }

    /// Dominators from node 0, and retained sizes. Uses the edges up: they become the
    /// predecessor lists, so the graph never holds both at once, and are gone after.
    pub fn dominators(&mut self) -> Dominators {
        let n = self.len();
        let first_edge = std::mem::take(&mut self.first_edge);
        let mut to = std::mem::take(&mut self.edge_to);
        // 1. Postorder of a depth-first walk from the root.
        let mut po_of = vec![NONE; n];
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut visited = Bits::new(n);
        depth_first(&first_edge, &to, 0, |v, step| match step {
            Step::Enter if visited.get(v as usize) => false,
            Step::Enter => {
                visited.set(v as usize);
                true
            }
            Step::Leave => {
                po_of[v as usize] = order.len() as u32;
                order.push(v);
                true
            }
        });
        drop(visited);
        let r = order.len();
        // 2. Predecessors of the reachable nodes, by postorder number. Targets are renumbered
        // in place, so the map from node to postorder is dropped before the lists are built.
        for t in to.iter_mut() {
            *t = po_of[*t as usize];
        }
        drop(po_of);
        let edges = |v: u32| first_edge[v as usize] as usize..first_edge[v as usize + 1] as usize;
        // pred_first[t] counts t's predecessors, then sums to where t's list ends, and is
        // stepped back as the list fills: its start at the end, with no second cursor array.
        let mut pred_first = vec![0u32; r + 1];
        for &v in &order {
            for e in edges(v) {
                pred_first[to[e] as usize] += 1;
            }
        }
        for i in 1..r {
            pred_first[i] += pred_first[i - 1];
        }
        pred_first[r] = pred_first[r - 1];
        let mut preds = vec![0u32; pred_first[r] as usize];
        for (p, &v) in order.iter().enumerate().rev() {
            for e in edges(v) {
                let t = to[e] as usize;
                pred_first[t] -= 1;
                preds[pred_first[t] as usize] = p as u32;
            }
        }
        drop(to);
        drop(first_edge);
        // 3. Cooper-Harvey-Kennedy: iterate in reverse postorder until nothing changes.
        let root = (r - 1) as u32;
        let mut doms = vec![NONE; r];
        doms[root as usize] = root;
        let mut changed = true;
        while changed {
            changed = false;
            for b in (0..r - 1).rev() {
                let mut new_idom = NONE;
                for &p in &preds[pred_first[b] as usize..pred_first[b + 1] as usize] {
                    if doms[p as usize] == NONE {
                        continue;
                    }
                    new_idom = if new_idom == NONE { p } else { intersect(&doms, p, new_idom) };
                }
                if new_idom != NONE && doms[b] != new_idom {
                    doms[b] = new_idom;
                    changed = true;
                }
            }
        }
        drop(preds);
        drop(pred_first);
        // 4. Retained sizes: a node's dominator comes later in postorder.
        let mut retained: Vec<u64> = self.size.iter().map(|&s| s as u64).collect();
        for p in 0..r - 1 {
            let v = order[p] as usize;
            let d = order[doms[p] as usize] as usize;
            retained[d] += retained[v];
        }
        let mut idom = vec![NONE; n];
        for p in 0..r {
            idom[order[p] as usize] = order[doms[p] as usize];
        }
        Dominators { idom, retained }
    }

    /// Per class, the retained size of its objects, each counted once: an object dominated by
    /// another of its class is inside that one's retained size already.
    pub fn class_retained(&self, dom: &Dominators) -> Vec<u64> {
        self.class_retained_of(dom, None)
    }

    /// [`Graph::class_retained`] of the objects in `only` (all when `None`).
    pub fn class_retained_of(&self, dom: &Dominators, only: Option<&Bits>) -> Vec<u64> {
        let n = self.len();
        // Children lists of the dominator tree.
        let mut first = vec![0u32; n + 1];
        for v in 1..n {
            if dom.idom[v] != NONE {
                first[dom.idom[v] as usize + 1] += 1;
            }
        }
        for i in 0..n {
            first[i + 1] += first[i];
        }
        let mut fill = first.clone();
        let mut children = vec![0u32; first[n] as usize];
        for v in 1..n {
            let d = dom.idom[v];
            if d != NONE {
                children[fill[d as usize] as usize] = v as u32;
                fill[d as usize] += 1;
            }
        }
        drop(fill);
        // Objects of a class below one already counted are inside its retained size.
        let mut active = vec![0u32; self.classes.len()];
        let mut out = vec![0u64; self.classes.len()];
        let counted = |v: usize| only.is_none_or(|b| b.get(v));
        depth_first(&first, &children, 0, |v, step| {
            let v = v as usize;
            if counted(v) {
                let c = self.class[v] as usize;
                if step == Step::Enter {
                    if active[c] == 0 {
                        out[c] += dom.retained[v];
                    }
                    active[c] += 1;
                } else {
                    active[c] -= 1;
                }
            }
            true
        });
        out
    }

    /// Shortest retainer paths, by a breadth-first walk from the root over the strong edges.
    /// Keeps the label of each node's first edge and gives up the others' (`edge_ty`,
    /// `edge_name`): the dominators that follow need the memory.
    pub fn retainers(&mut self) -> Retainers {
        let n = self.len();
        let mut parent = vec![NONE; n];
        let mut parent_ty = vec![0u8; n];
        let mut parent_name = vec![0u32; n];
        let mut seen = Bits::new(n);
        seen.set(0);
        let mut reach = |to: usize, v: u32, e: usize, seen: &mut Bits| {
            seen.set(to);
            parent[to] = v;
            parent_ty[to] = self.edge_ty[e];
            parent_name[to] = self.edge_name[e];
        };
        let mut queue = std::collections::VecDeque::from([0u32]);
        // As DevTools does, paths from the app's own roots (globals, native wrappers) first:
        // V8's internal roots (stack, handles, caches) are walked only after them, so an object
        // the app holds is never shown as held by a stack slot of the moment.
        let mut internal = Vec::new();
        while let Some(v) = queue.pop_front() {
            for e in self.edges(v as usize) {
                let to = self.edge_to[e] as usize;
                if !seen.get(to) {
                    if v == 0 && self.strings.get(self.name[to]) == Some("(GC roots)") {
                        internal.push((to, e));
                        continue;
                    }
                    reach(to, v, e, &mut seen);
                    queue.push_back(to as u32);
                }
            }
            if queue.is_empty() {
                for (to, e) in internal.drain(..) {
                    if !seen.get(to) {
                        reach(to, 0, e, &mut seen);
                        queue.push_back(to as u32);
                    }
                }
            }
        }
        self.edge_ty = Vec::new();
        self.edge_name = Vec::new();
        Retainers { parent, edge_ty: parent_ty, edge_name: parent_name }
    }

    /// How a node is shown: its class, its name where that tells more (a function's, a system
    /// object's), and its id.
    pub fn label(&self, v: usize) -> String {
        let class = &self.classes.names[self.class[v] as usize];
        let name = self.strings.get(self.name[v]).unwrap_or("");
        let ty = self.node_types.get(self.ty[v] as usize).map(String::as_str).unwrap_or("");
        let shown = match ty {
            "closure" if !name.is_empty() => format!("{name}()"),
            "hidden" | "array" | "synthetic" | "code" | "object shape" if !name.is_empty() => name.to_string(),
            _ => class.clone(),
        };
        if v == 0 {
            return "(root)".into();
        }
        format!("{shown} @{}", self.id[v])
    }

    fn edge_label(&self, ty: u8, name_or_index: u32) -> String {
        let ty = ty as usize;
        if self.indexed[ty] {
            format!("[{name_or_index}]")
        } else {
            let name = self.strings.get(name_or_index).unwrap_or("?");
            match self.edge_types[ty].as_str() {
                "context" => format!("{name} (context)"),
                "internal" | "shortcut" => name.to_string(),
                _ => format!(".{name}"),
            }
        }
    }

    /// The shortest path from the root to `v`, one step per edge: `edge → node`.
    pub fn path(&self, retainers: &Retainers, v: usize) -> Option<Vec<String>> {
        let mut steps = Vec::new();
        let mut at = v;
        while at != 0 {
            let p = retainers.parent[at];
            if p == NONE {
                return None;
            }
            steps.push(format!(
                "{} {}",
                self.edge_label(retainers.edge_ty[at], retainers.edge_name[at]),
                self.label(at)
            ));
            at = p as usize;
            if steps.len() > 10_000 {
                return None;
            }
        }
        steps.push(self.label(0));
        steps.reverse();
        Some(steps)
    }
}

fn intersect(doms: &[u32], mut a: u32, mut b: u32) -> u32 {
    while a != b {
        while a < b {
            a = doms[a as usize];
        }
        while b < a {
            b = doms[b as usize];
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::super::parse::{parse, tests::Builder};
    use super::*;

    fn graph(b: &Builder) -> Graph {
        let mut sink = GraphSink::new(true);
        parse(b.json().as_bytes(), &mut sink).unwrap();
        sink.finish().unwrap()
    }

    /// The classic example (Lengauer and Tarjan's paper, Cooper et al.'s figure 2 shape):
    /// root → a, root → b; a → c; b → c; c → d; d → e; a → e; e is dominated by root.
    #[test]
    fn dominators_and_retained_sizes_of_a_small_graph() {
        let mut b = Builder::new();
        let root = b.node("synthetic", "", 1, 0);
        let a = b.node("object", "A", 3, 10);
        let bb = b.node("object", "B", 5, 20);
        let c = b.node("object", "C", 7, 30);
        let d = b.node("object", "D", 9, 40);
        let e = b.node("object", "E", 11, 50);
        let lonely = b.node("object", "Lonely", 13, 60);
        let weakly = b.node("object", "Weakly", 15, 70);
        b.edge(root, "shortcut", "a", a);
        b.edge(root, "shortcut", "b", bb);
        b.edge(a, "property", "c", c);
        b.edge(a, "property", "e", e);
        b.edge(a, "weak", "w", weakly);
        b.edge(bb, "property", "c", c);
        b.edge(c, "property", "d", d);
        b.edge(d, "property", "e", e);
        let mut g = graph(&b);
        let dom = g.dominators();
        assert_eq!(dom.idom[a], root as u32);
        assert_eq!(dom.idom[bb], root as u32);
        assert_eq!(dom.idom[c], root as u32, "two ways in");
        assert_eq!(dom.idom[d], c as u32);
        assert_eq!(dom.idom[e], root as u32, "through a and through d");
        assert_eq!(dom.idom[lonely], NONE);
        assert_eq!(dom.idom[weakly], NONE, "weak edges do not retain");
        assert_eq!(dom.retained[c], 70);
        assert_eq!(dom.retained[a], 10);
        assert_eq!(dom.retained[root], 150);
        assert_eq!(dom.retained[lonely], 60);
    }

    /// Dominators by their definition (d dominates v if v is unreachable from the root without
    /// d), against the iterative algorithm on pseudo-random graphs with cycles, weak edges,
    /// nodes without edges and unreachable nodes.
    #[test]
    fn dominators_match_their_definition_on_random_graphs() {
        let mut seed = 0x2545_f491_u64;
        let mut next = |bound: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % bound
        };
        for _ in 0..30 {
            let n = 2 + next(40);
            let mut b = Builder::new();
            for i in 0..n {
                b.node("object", "O", 1 + 2 * i as u32, 1 + i as u32);
            }
            let mut strong: Vec<(usize, usize)> = Vec::new();
            let mut weak = 0;
            for _ in 0..next(3 * n) {
                let (from, to) = (next(n), next(n));
                if next(5) == 0 {
                    b.edge(from, "weak", "w", to);
                    weak += 1;
                } else {
                    b.edge(from, "property", "p", to);
                    strong.push((from, to));
                }
            }
            let reach = |without: Option<usize>| {
                let mut seen = vec![false; n];
                if without == Some(0) {
                    return seen;
                }
                let mut todo = vec![0];
                seen[0] = true;
                while let Some(v) = todo.pop() {
                    for &(f, t) in &strong {
                        if f == v && !seen[t] && Some(t) != without {
                            seen[t] = true;
                            todo.push(t);
                        }
                    }
                }
                seen
            };
            let reachable = reach(None);
            // Strict dominators of each node; the immediate one has the most of its own.
            let mut doms: Vec<Vec<usize>> = vec![Vec::new(); n];
            for d in 0..n {
                let without = reach(Some(d));
                for v in 0..n {
                    if v != d && reachable[v] && !without[v] {
                        doms[v].push(d);
                    }
                }
            }
            let mut g = graph(&b);
            assert_eq!((g.first_edge[n] as usize, g.edge_count as usize), (strong.len(), strong.len() + weak));
            let dom = g.dominators();
            for v in 1..n {
                let want = doms[v].iter().copied().max_by_key(|&d| doms[d].len());
                let want = if reachable[v] { want.map(|d| d as u32) } else { None };
                assert_eq!(dom.idom[v], want.unwrap_or(NONE), "node {v} of {n}: {strong:?}");
            }
        }
    }

    #[test]
    fn dominators_with_a_cycle_and_a_chain() {
        // root → x → y → z → x (cycle), y → w; root → w: w's dominator is the root.
        let mut b = Builder::new();
        let root = b.node("synthetic", "", 1, 0);
        let x = b.node("object", "X", 3, 1);
        let y = b.node("object", "Y", 5, 2);
        let z = b.node("object", "Z", 7, 4);
        let w = b.node("object", "W", 9, 8);
        b.edge(root, "element", "0", x);
        b.edge(root, "element", "1", w);
        b.edge(x, "property", "y", y);
        b.edge(y, "property", "z", z);
        b.edge(y, "property", "w", w);
        b.edge(z, "property", "x", x);
        let mut g = graph(&b);
        let dom = g.dominators();
        assert_eq!(dom.idom[x], root as u32);
        assert_eq!(dom.idom[y], x as u32);
        assert_eq!(dom.idom[z], y as u32);
        assert_eq!(dom.idom[w], root as u32);
        assert_eq!(dom.retained[x], 7);
    }

    #[test]
    fn class_retained_counts_nested_objects_of_a_class_once() {
        // A list of Nodes: root → n1 → n2 → n3, each 10 bytes, each holding a 100-byte array.
        let mut b = Builder::new();
        let root = b.node("synthetic", "", 1, 0);
        let mut prev = root;
        for i in 0..3u32 {
            let n = b.node("object", "ListNode", 3 + 4 * i, 10);
            let arr = b.node("array", "(object elements)", 5 + 4 * i, 100);
            b.edge(prev, "property", "next", n);
            b.edge(n, "internal", "elements", arr);
            prev = n;
        }
        let mut g = graph(&b);
        let dom = g.dominators();
        let per_class = g.class_retained(&dom);
        let list = g.classes.names.iter().position(|n| n == "ListNode").unwrap();
        let array = g.classes.names.iter().position(|n| n == "(array)").unwrap();
        assert_eq!(per_class[list], 330, "the head retains the rest");
        assert_eq!(per_class[array], 300);
    }

    #[test]
    fn shortest_retainer_paths() {
        let mut b = Builder::new();
        let root = b.node("synthetic", "", 1, 0);
        let roots = b.node("synthetic", "(GC roots)", 3, 0);
        let global = b.node("object", "global", 5, 10);
        let ctx = b.node("hidden", "system / Context", 7, 10);
        let map = b.node("object", "Map", 9, 10);
        let table = b.node("array", "(object elements)", 11, 10);
        let value = b.node("object", "Array", 13, 10);
        let secret = b.node("string", "password=hunter2", 15, 10);
        b.edge(root, "element", "1", roots);
        b.edge(roots, "shortcut", "global", global);
        b.edge(global, "internal", "context", ctx);
        b.edge(global, "weak", "shortcut_to_value", value);
        b.edge(ctx, "context", "leakyCache", map);
        b.edge(map, "internal", "table", table);
        b.edge(table, "element", "3", value);
        b.edge(value, "property", "s", secret);
        let mut g = graph(&b);
        let parents = g.retainers();
        let path = g.path(&parents, value).unwrap().join(" → ");
        assert_eq!(
            path,
            "(root) → [1] (GC roots) @3 → global global @5 → context system / Context @7 → \
             leakyCache (context) Map @9 → table (object elements) @11 → [3] Array @13"
        );
        // Through V8's roots only when the app's own roots do not reach it.
        assert!(g.path(&parents, global).unwrap()[1].starts_with("[1] (GC roots)"));
        let path = g.path(&parents, secret).unwrap().join(" → ");
        assert!(path.ends_with(".s (string) @15"), "{path}");
        assert!(!g.strings.bytes.contains("hunter2"), "string contents are never kept");
    }
}
