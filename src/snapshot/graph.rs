//! A snapshot's whole object graph, for retained sizes and retainer paths: nodes and edges as
//! flat arrays (about 17 bytes a node and 9 an edge), the dominator tree (Cooper, Harvey and
//! Kennedy's iterative algorithm over a postorder, with V8's conventions: node 0 is the root,
//! weak edges do not retain), retained sizes, and shortest retainer paths from the root.

use std::collections::HashMap;

use super::model::{name_is_shown, Bits, ClassTable};
use super::parse::{Meta, ParseError, Sink};

const NONE: u32 = u32::MAX;

#[derive(Debug, Default)]
pub struct Graph {
    pub node_types: Vec<String>,
    pub edge_types: Vec<String>,
    pub ty: Vec<u8>,
    pub name: Vec<u32>,
    pub id: Vec<u32>,
    pub size: Vec<u32>,
    pub class: Vec<u32>,
    /// Node i's edges are `first_edge[i]..first_edge[i + 1]`.
    pub first_edge: Vec<u32>,
    pub edge_ty: Vec<u8>,
    pub edge_name: Vec<u32>,
    /// Target node index.
    pub edge_to: Vec<u32>,
    pub classes: ClassTable,
    pub strings: HashMap<u32, String>,
    weak: u8,
    /// Edge types whose name is an index, not a string.
    indexed: Vec<bool>,
}

pub struct GraphSink {
    pub graph: Graph,
    wanted: Bits,
    node_width: u32,
    pos: (usize, usize, usize, usize, usize),
    epos: (usize, usize, usize),
    shown: Vec<bool>,
}

impl GraphSink {
    pub fn new() -> GraphSink {
        GraphSink {
            graph: Graph::default(),
            wanted: Bits::default(),
            node_width: 1,
            pos: (0, 0, 0, 0, 0),
            epos: (0, 0, 0),
            shown: Vec::new(),
        }
    }

    /// Checks the graph read and names its classes.
    pub fn finish(mut self) -> Result<Graph, ParseError> {
        let g = &mut self.graph;
        let n = g.ty.len();
        if n == 0 {
            return Err(ParseError::Meta("a snapshot without nodes".into()));
        }
        if *g.first_edge.last().expect("one entry per node and one more") as usize != g.edge_to.len() {
            return Err(ParseError::Meta("the nodes' edge counts do not add up to the edges".into()));
        }
        if g.edge_to.iter().any(|&t| t as usize >= n) {
            return Err(ParseError::Meta("an edge to a node that does not exist".into()));
        }
        g.classes.resolve(&g.strings);
        Ok(self.graph)
    }
}

impl Default for GraphSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for GraphSink {
    fn meta(&mut self, meta: &Meta) -> Result<(), ParseError> {
        let g = &mut self.graph;
        g.classes = ClassTable::new(meta);
        g.node_types = meta.node_types.clone();
        g.edge_types = meta.edge_types.clone();
        g.weak = meta.edge_type_index("weak").unwrap_or(u8::MAX);
        g.indexed = meta.edge_types.iter().map(|t| t == "element" || t == "hidden").collect();
        self.shown = meta.node_types.iter().map(|t| name_is_shown(t)).collect();
        self.node_width = meta.node_fields.len() as u32;
        self.pos = (meta.node_type, meta.node_name, meta.node_id, meta.node_self_size, meta.node_edge_count);
        self.epos = (meta.edge_type, meta.edge_name, meta.edge_to);
        let nodes = meta.node_count.min(1 << 27) as usize;
        let edges = meta.edge_count.min(1 << 28) as usize;
        g.ty.reserve(nodes);
        g.name.reserve(nodes);
        g.id.reserve(nodes);
        g.size.reserve(nodes);
        g.class.reserve(nodes);
        g.first_edge.reserve(nodes + 1);
        g.first_edge.push(0);
        g.edge_ty.reserve(edges);
        g.edge_name.reserve(edges);
        g.edge_to.reserve(edges);
        Ok(())
    }

    fn node(&mut self, f: &[u32]) -> Result<(), ParseError> {
        let (t, n, i, s, e) = self.pos;
        let g = &mut self.graph;
        let class = g.classes.class_of(f[t], f[n], &mut self.wanted)?;
        if self.shown[f[t] as usize] {
            self.wanted.set(f[n] as usize);
        }
        g.ty.push(f[t] as u8);
        g.name.push(f[n]);
        g.id.push(f[i]);
        g.size.push(f[s]);
        g.class.push(class);
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
        let g = &mut self.graph;
        if !g.indexed[ty as usize] {
            self.wanted.set(f[n] as usize);
        }
        g.edge_ty.push(ty);
        g.edge_name.push(f[n]);
        g.edge_to.push(f[to] / self.node_width);
        Ok(())
    }

    fn wants_string(&mut self, index: u32) -> bool {
        self.wanted.get(index as usize)
    }

    fn string(&mut self, index: u32, value: String) {
        self.graph.strings.insert(index, value);
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

impl Graph {
    pub fn len(&self) -> usize {
        self.ty.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ty.is_empty()
    }

    #[inline]
    fn edges(&self, node: usize) -> std::ops::Range<usize> {
        self.first_edge[node] as usize..self.first_edge[node + 1] as usize
    }

    #[inline]
    fn strong(&self, e: usize) -> bool {
        self.edge_ty[e] != self.weak
    }

    /// Dominators from node 0 over the strong edges, and retained sizes.
    pub fn dominators(&self) -> Dominators {
        let n = self.len();
        // 1. Postorder of a depth-first walk from the root.
        let mut po_of = vec![NONE; n];
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut visited = Bits::new(n);
        let mut stack: Vec<(u32, u32)> = vec![(0, self.first_edge[0])];
        visited.set(0);
        while let Some(top) = stack.last_mut() {
            let node = top.0 as usize;
            let end = self.first_edge[node + 1];
            let mut pushed = None;
            while top.1 < end {
                let e = top.1 as usize;
                top.1 += 1;
                let to = self.edge_to[e] as usize;
                if self.strong(e) && !visited.get(to) {
                    visited.set(to);
                    pushed = Some(to);
                    break;
                }
            }
            match pushed {
                Some(to) => stack.push((to as u32, self.first_edge[to])),
                None => {
                    po_of[node] = order.len() as u32;
                    order.push(node as u32);
                    stack.pop();
                }
            }
        }
        drop(stack);
        drop(visited);
        let r = order.len();
        // 2. Predecessors of the reachable nodes, by postorder number.
        let mut pred_first = vec![0u32; r + 1];
        for &v in &order {
            for e in self.edges(v as usize) {
                if self.strong(e) {
                    pred_first[po_of[self.edge_to[e] as usize] as usize + 1] += 1;
                }
            }
        }
        for i in 0..r {
            pred_first[i + 1] += pred_first[i];
        }
        let mut fill = pred_first.clone();
        let mut preds = vec![0u32; pred_first[r] as usize];
        for (p, &v) in order.iter().enumerate() {
            for e in self.edges(v as usize) {
                if self.strong(e) {
                    let t = po_of[self.edge_to[e] as usize] as usize;
                    preds[fill[t] as usize] = p as u32;
                    fill[t] += 1;
                }
            }
        }
        drop(fill);
        drop(po_of);
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
        let mut active = vec![0u32; self.classes.len()];
        let mut out = vec![0u64; self.classes.len()];
        let mut stack: Vec<(u32, u32)> = Vec::new();
        let counted = |v: usize| only.is_none_or(|b| b.get(v));
        let enter = |v: usize, active: &mut Vec<u32>, out: &mut Vec<u64>| {
            if !counted(v) {
                return;
            }
            let c = self.class[v] as usize;
            if active[c] == 0 {
                out[c] += dom.retained[v];
            }
            active[c] += 1;
        };
        enter(0, &mut active, &mut out);
        stack.push((0, first[0]));
        while let Some(top) = stack.last_mut() {
            let v = top.0 as usize;
            if top.1 < first[v + 1] {
                let c = children[top.1 as usize] as usize;
                top.1 += 1;
                enter(c, &mut active, &mut out);
                stack.push((c as u32, first[c]));
            } else {
                if counted(v) {
                    active[self.class[v] as usize] -= 1;
                }
                stack.pop();
            }
        }
        out
    }

    /// The edge by which a breadth-first walk from the root over strong edges first reached each
    /// node (`u32::MAX` for the root and unreachable nodes): shortest retainer paths.
    pub fn shortest_parents(&self) -> Vec<u32> {
        let n = self.len();
        let mut parent = vec![NONE; n];
        let mut seen = Bits::new(n);
        seen.set(0);
        let mut queue = std::collections::VecDeque::from([0u32]);
        // As DevTools does, paths from the app's own roots (globals, native wrappers) first:
        // V8's internal roots (stack, handles, caches) are walked only after them, so an object
        // the app holds is never shown as held by a stack slot of the moment.
        let mut internal = Vec::new();
        while let Some(v) = queue.pop_front() {
            for e in self.edges(v as usize) {
                let to = self.edge_to[e] as usize;
                if self.strong(e) && !seen.get(to) {
                    if v == 0 && self.strings.get(&self.name[to]).is_some_and(|n| n == "(GC roots)") {
                        internal.push((to, e));
                        continue;
                    }
                    seen.set(to);
                    parent[to] = e as u32;
                    queue.push_back(to as u32);
                }
            }
            if queue.is_empty() {
                for (to, e) in internal.drain(..) {
                    if !seen.get(to) {
                        seen.set(to);
                        parent[to] = e as u32;
                        queue.push_back(to as u32);
                    }
                }
            }
        }
        parent
    }

    /// The node an edge leaves from.
    fn source_of(&self, e: u32) -> usize {
        self.first_edge.partition_point(|&f| f <= e) - 1
    }

    /// How a node is shown: its class, its name where that tells more (a function's, a system
    /// object's), and its id.
    pub fn label(&self, v: usize) -> String {
        let class = &self.classes.names[self.class[v] as usize];
        let name = self.strings.get(&self.name[v]).map(String::as_str).unwrap_or("");
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

    fn edge_label(&self, e: usize) -> String {
        let ty = self.edge_ty[e] as usize;
        if self.indexed[ty] {
            format!("[{}]", self.edge_name[e])
        } else {
            let name = self.strings.get(&self.edge_name[e]).map(String::as_str).unwrap_or("?");
            match self.edge_types[ty].as_str() {
                "context" => format!("{name} (context)"),
                "internal" | "shortcut" => name.to_string(),
                _ => format!(".{name}"),
            }
        }
    }

    /// The shortest path from the root to `v`, one step per edge: `edge → node`.
    pub fn path(&self, parents: &[u32], v: usize) -> Option<Vec<String>> {
        let mut steps = Vec::new();
        let mut at = v;
        while at != 0 {
            let e = parents[at];
            if e == NONE {
                return None;
            }
            steps.push(format!("{} {}", self.edge_label(e as usize), self.label(at)));
            at = self.source_of(e);
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
        let mut sink = GraphSink::new();
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
        let g = graph(&b);
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
        let g = graph(&b);
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
        let g = graph(&b);
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
        let g = graph(&b);
        let parents = g.shortest_parents();
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
        assert!(!g.strings.values().any(|s| s.contains("hunter2")), "string contents are never kept");
    }
}
