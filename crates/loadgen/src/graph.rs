//! Deterministic random friend graphs.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// A "regular-ish" undirected graph of `users` nodes with about `degree` neighbours each:
/// the union of `degree / 2` random Hamiltonian cycles (plus one random matching when
/// `degree` is odd). Duplicate edges are dropped, so a few nodes end up slightly below
/// `degree`. The same seed always gives the same graph.
pub fn regular_ish(users: usize, degree: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut adjacency: Vec<Vec<u32>> = vec![Vec::with_capacity(degree); users];
    if users < 2 || degree == 0 {
        return adjacency;
    }
    let degree = degree.min(users - 1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<u32> = (0..users as u32).collect();
    let add = |adjacency: &mut Vec<Vec<u32>>, a: u32, b: u32| {
        if a != b && !adjacency[a as usize].contains(&b) {
            adjacency[a as usize].push(b);
            adjacency[b as usize].push(a);
        }
    };
    for _ in 0..degree / 2 {
        order.shuffle(&mut rng);
        for i in 0..users {
            add(&mut adjacency, order[i], order[(i + 1) % users]);
        }
    }
    if degree % 2 == 1 {
        order.shuffle(&mut rng);
        for pair in order.chunks_exact(2) {
            add(&mut adjacency, pair[0], pair[1]);
        }
    }
    for list in &mut adjacency {
        list.sort_unstable();
    }
    adjacency
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_is_symmetric_deterministic_and_near_regular() {
        let g = regular_ish(1000, 50, 7);
        assert_eq!(g, regular_ish(1000, 50, 7));
        for (a, list) in g.iter().enumerate() {
            assert!(
                list.len() <= 50 && list.len() >= 40,
                "degree {}",
                list.len()
            );
            assert!(!list.contains(&(a as u32)));
            for &b in list {
                assert!(g[b as usize].contains(&(a as u32)));
            }
        }
    }
}
