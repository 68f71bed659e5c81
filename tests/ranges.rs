//! Property tests of `RangeSet` against a plain `BTreeSet` model, over many seeds.

use secure_gossip::RangeSet;
use secure_gossip::sim::Rng;
use std::collections::BTreeSet;

fn random_set(rng: &mut Rng, universe: u64) -> (RangeSet, BTreeSet<u64>) {
    let mut set = RangeSet::new();
    let mut model = BTreeSet::new();
    for _ in 0..rng.below(12) {
        let s = 1 + rng.below(universe);
        let e = s + rng.below(6);
        if rng.below(4) == 0 {
            set.remove_range(s, e);
            for v in s..=e {
                model.remove(&v);
            }
        } else {
            set.insert_range(s, e);
            model.extend(s..=e);
        }
    }
    (set, model)
}

fn values(set: &RangeSet) -> BTreeSet<u64> {
    set.ranges().flat_map(|(s, e)| s..=e).collect()
}

fn canonical(set: &RangeSet) -> bool {
    RangeSet::from_wire(&set.to_wire()).as_ref() == Ok(set)
}

#[test]
fn set_operations_match_a_model_over_many_seeds() {
    for seed in 0..3_000u64 {
        let mut rng = Rng::new(seed);
        let (a, ma) = random_set(&mut rng, 40);
        let (b, mb) = random_set(&mut rng, 40);
        assert!(canonical(&a) && canonical(&b), "seed {seed}");
        assert_eq!(values(&a), ma, "insert/remove, seed {seed}");
        let diff = a.difference(&b);
        assert!(canonical(&diff), "seed {seed}");
        assert_eq!(values(&diff), &ma - &mb, "difference, seed {seed}");
        let inter = a.intersection(&b);
        assert!(canonical(&inter), "seed {seed}");
        assert_eq!(values(&inter), &ma & &mb, "intersection, seed {seed}");
        let mut union = a.clone();
        union.union_with(&b);
        assert!(canonical(&union), "seed {seed}");
        assert_eq!(values(&union), &ma | &mb, "union, seed {seed}");
        for v in 0..50 {
            assert_eq!(a.contains(v), ma.contains(&v), "contains {v}, seed {seed}");
        }
        assert_eq!(a.len(), ma.len() as u64, "len, seed {seed}");
        let collected: RangeSet = ma.iter().copied().collect();
        assert_eq!(collected, a, "from_iter, seed {seed}");
    }
}
