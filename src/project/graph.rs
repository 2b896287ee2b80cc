//! The step graph of a runbook: which step waits for which, cycles, a stable order, and the
//! set of steps sure to have finished before a given one.

/// A cycle of steps: `path` in running order, and the other steps of the same knot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    pub path: Vec<usize>,
    pub others: Vec<usize>,
}

/// Steps by index (their order in the file) and, for each, the indices it needs.
#[derive(Clone, Debug, Default)]
pub struct StepGraph {
    needs: Vec<Vec<usize>>,
}

impl StepGraph {
    /// `needs[i]` lists the steps step `i` waits for; every index must be in range.
    pub fn new(needs: Vec<Vec<usize>>) -> Self {
        debug_assert!(needs.iter().flatten().all(|&n| n < needs.len()));
        Self { needs }
    }

    pub fn len(&self) -> usize {
        self.needs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.needs.is_empty()
    }

    pub fn needs(&self, step: usize) -> &[usize] {
        &self.needs[step]
    }

    /// Every cycle: one per strongly connected component of more than one step (or a step
    /// that needs itself), ordered by the first step written. Each is a closed walk in
    /// running order (each step is needed by the one after it, the last by the first)
    /// starting from the component's first-written step, the shortest through it; the
    /// component's other steps, caught in the knot but not on that walk, are listed apart.
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut cycles: Vec<Cycle> = self
            .strongly_connected()
            .into_iter()
            .filter(|scc| scc.len() > 1 || self.needs[scc[0]].contains(&scc[0]))
            .map(|mut scc| {
                scc.sort_unstable();
                let path = self.shortest_cycle_through(scc[0], &scc);
                let others = scc.into_iter().filter(|s| !path.contains(s)).collect();
                Cycle { path, others }
            })
            .collect();
        cycles.sort_by_key(|c| c.path[0]);
        cycles
    }

    /// Tarjan's algorithm, iterative (a runbook may have thousands of steps).
    fn strongly_connected(&self) -> Vec<Vec<usize>> {
        const UNSEEN: usize = usize::MAX;
        let n = self.len();
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<usize> = Vec::new();
        let mut next_index = 0;
        let mut out = Vec::new();
        for start in 0..n {
            if index[start] != UNSEEN {
                continue;
            }
            let mut call: Vec<(usize, usize)> = vec![(start, 0)];
            index[start] = next_index;
            low[start] = next_index;
            next_index += 1;
            stack.push(start);
            on_stack[start] = true;
            while let Some(&mut (node, ref mut next)) = call.last_mut() {
                if let Some(&need) = self.needs[node].get(*next) {
                    *next += 1;
                    if index[need] == UNSEEN {
                        index[need] = next_index;
                        low[need] = next_index;
                        next_index += 1;
                        stack.push(need);
                        on_stack[need] = true;
                        call.push((need, 0));
                    } else if on_stack[need] {
                        low[node] = low[node].min(index[need]);
                    }
                } else {
                    call.pop();
                    if let Some(&(parent, _)) = call.last() {
                        low[parent] = low[parent].min(low[node]);
                    }
                    if low[node] == index[node] {
                        let mut scc = Vec::new();
                        while let Some(s) = stack.pop() {
                            on_stack[s] = false;
                            scc.push(s);
                            if s == node {
                                break;
                            }
                        }
                        out.push(scc);
                    }
                }
            }
        }
        out
    }

    /// The shortest walk `start -> … -> start` in running order inside `members`.
    fn shortest_cycle_through(&self, start: usize, members: &[usize]) -> Vec<usize> {
        // Running order follows "is needed by": from a step to the steps that need it.
        let inside = |s: usize| members.binary_search(&s).is_ok();
        let mut dependents: std::collections::HashMap<usize, Vec<usize>> =
            std::collections::HashMap::new();
        for &member in members {
            for &need in &self.needs[member] {
                if inside(need) {
                    dependents.entry(need).or_default().push(member);
                }
            }
        }
        let mut came_from: std::collections::HashMap<usize, usize> =
            std::collections::HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(step) = queue.pop_front() {
            for &dependent in dependents.get(&step).into_iter().flatten() {
                if dependent == start {
                    let mut path = vec![step];
                    let mut at = step;
                    while at != start {
                        at = came_from[&at];
                        path.push(at);
                    }
                    path.reverse();
                    return path;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = came_from.entry(dependent) {
                    e.insert(step);
                    queue.push_back(dependent);
                }
            }
        }
        vec![start]
    }

    /// Steps in an order where each comes after all it needs; ties keep file order.
    /// Steps on a cycle are left out.
    pub fn topological_order(&self) -> Vec<usize> {
        let mut waiting: Vec<usize> = self.needs.iter().map(Vec::len).collect();
        let mut dependents = vec![Vec::new(); self.len()];
        for (step, needs) in self.needs.iter().enumerate() {
            for &need in needs {
                dependents[need].push(step);
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..self.len()).filter(|&s| waiting[s] == 0).collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(step) = ready.pop_first() {
            order.push(step);
            for &dependent in &dependents[step] {
                waiting[dependent] -= 1;
                if waiting[dependent] == 0 {
                    ready.insert(dependent);
                }
            }
        }
        order
    }

    /// Every step that `step` waits for, directly or not.
    pub fn ancestors(&self, step: usize) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<usize> = self.needs[step].clone();
        while let Some(s) = stack.pop() {
            if !std::mem::replace(&mut seen[s], true) {
                stack.extend(&self.needs[s]);
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_a_cycle_in_running_order() {
        // 0 <- 1 <- 2 <- 1 (1 needs 2, 2 needs 1)
        let g = StepGraph::new(vec![vec![], vec![0, 2], vec![1]]);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(cycles[0].path, vec![1, 2]);
        assert!(
            StepGraph::new(vec![vec![], vec![0], vec![0, 1]])
                .cycles()
                .is_empty()
        );
        assert_eq!(StepGraph::new(vec![vec![0]]).cycles()[0].path, vec![0]);
    }

    #[test]
    fn cycle_reads_in_running_order() {
        // a needs c, b needs a, c needs b: running order a -> b -> c -> a.
        let g = StepGraph::new(vec![vec![2], vec![0], vec![1]]);
        let cycle = g.cycles()[0].path.clone();
        // every element is needed by the next one
        for w in 0..cycle.len() {
            let (a, b) = (cycle[w], cycle[(w + 1) % cycle.len()]);
            assert!(g.needs(b).contains(&a), "{cycle:?}");
        }
    }

    #[test]
    fn every_cycle_is_found() {
        // a<->b, and e->f->g->e; c is fine.
        let g = StepGraph::new(vec![vec![1], vec![0], vec![], vec![5], vec![3], vec![4]]);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 2, "{cycles:?}");
        assert_eq!(cycles[0].path, vec![0, 1]);
        // 3 needs 5, 4 needs 3, 5 needs 4: running order 3 -> 4 -> 5 -> 3.
        assert_eq!(cycles[1].path, vec![3, 4, 5]);
        assert!(cycles.iter().all(|c| c.others.is_empty()));
        // Two loops sharing step 0: both in one knot; the shorter is the path.
        let g = StepGraph::new(vec![vec![1, 2], vec![0], vec![3], vec![0]]);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(cycles[0].path, vec![0, 1]);
        assert_eq!(cycles[0].others, vec![2, 3]);
    }

    #[test]
    fn order_respects_needs_and_file_order() {
        let g = StepGraph::new(vec![vec![], vec![], vec![0], vec![1, 2]]);
        assert_eq!(g.topological_order(), vec![0, 1, 2, 3]);
        let a = g.ancestors(3);
        assert_eq!(a, vec![true, true, true, false]);
    }

    fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
        (1usize..30)
            .prop_flat_map(|n| {
                (0..n)
                    .map(|i| proptest::collection::vec(0..i.max(1), 0..=i.min(4)))
                    .collect::<Vec<_>>()
            })
            .prop_map(|needs| {
                needs
                    .into_iter()
                    .enumerate()
                    .map(|(i, ns)| ns.into_iter().filter(|&n| n < i).collect())
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn dags_have_no_cycle_and_a_full_order(needs in dag()) {
            let g = StepGraph::new(needs);
            prop_assert!(g.cycles().is_empty());
            let order = g.topological_order();
            prop_assert_eq!(order.len(), g.len());
            let position: Vec<usize> = {
                let mut p = vec![0; g.len()];
                for (i, &s) in order.iter().enumerate() { p[s] = i; }
                p
            };
            for s in 0..g.len() {
                for &n in g.needs(s) {
                    prop_assert!(position[n] < position[s]);
                }
            }
        }

        #[test]
        fn a_back_edge_makes_a_cycle(needs in dag(), pick in any::<proptest::sample::Index>()) {
            let mut needs = needs;
            let n = needs.len();
            // find an edge s -> t (s needs t) and add t needs s
            let edges: Vec<(usize, usize)> = needs.iter().enumerate()
                .flat_map(|(s, ns)| ns.iter().map(move |&t| (s, t))).collect();
            prop_assume!(!edges.is_empty());
            let (s, t) = edges[pick.index(edges.len())];
            needs[t].push(s);
            let g = StepGraph::new(needs);
            prop_assert!(g.topological_order().len() < n);
            let cycles = g.cycles();
            prop_assert!(!cycles.is_empty());
            for c in &cycles {
                for w in 0..c.path.len() {
                    let (a, b) = (c.path[w], c.path[(w + 1) % c.path.len()]);
                    prop_assert!(g.needs(b).contains(&a));
                }
            }
        }
    }
}
