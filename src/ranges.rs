//! Sets of sequence numbers as sorted, disjoint, non-adjacent inclusive ranges.
//!
//! An author's sequences form long contiguous runs (one run per process lifetime, see
//! `docs/PROTOCOL.md` §1), so a [`RangeSet`] of the ids a node knows is a handful of pairs however many
//! messages it covers. This is the wire form of [`Digest`](crate::frame::Digest) ranges too.

use std::fmt;

/// Why a list of wire ranges is not a valid [`RangeSet`] (`docs/PROTOCOL.md` §1: a protocol violation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeError {
    /// The list has an odd number of values, so the last range has no end.
    OddCount {
        /// How many values the list has.
        len: usize,
    },
    /// A range contains sequence 0, which no message can have.
    Zero,
    /// A range starts after it ends.
    StartAfterEnd {
        /// The range's start.
        start: u64,
        /// The range's end.
        end: u64,
    },
    /// A range does not start at least two past the end of the previous one: the ranges are
    /// unsorted, overlap, or touch (adjacent ranges must be merged).
    NotSeparated {
        /// The previous range's end.
        previous_end: u64,
        /// The next range's start.
        start: u64,
    },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::OddCount { len } => write!(f, "odd number of range values ({len})"),
            RangeError::Zero => write!(f, "range contains sequence 0"),
            RangeError::StartAfterEnd { start, end } => {
                write!(f, "range starts after it ends ({start} > {end})")
            }
            RangeError::NotSeparated {
                previous_end,
                start,
            } => write!(
                f,
                "range starting at {start} is unsorted, overlapping or adjacent to the previous \
                 one ending at {previous_end}"
            ),
        }
    }
}

impl std::error::Error for RangeError {}

/// A set of `u64` values (never 0) stored as sorted, disjoint, non-adjacent inclusive ranges.
///
/// The invariant holds after every operation, so [`RangeSet::to_wire`] always produces a list
/// that [`RangeSet::from_wire`] accepts.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct RangeSet {
    ranges: Ranges,
}

/// A [`RangeSet`]'s ranges: none or one kept inline, more on the heap. Most sets are one
/// range (an author's ids are one run per process lifetime), and the engine keeps one per
/// author per peer: inline, such a set costs no allocation (about 80 bytes of heap with the
/// allocator's header). Always normalised (`Many` holds at least two), so the derived
/// equality and hash are the slices'.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
enum Ranges {
    #[default]
    Empty,
    One((u64, u64)),
    Many(Vec<(u64, u64)>),
}

impl std::ops::Deref for Ranges {
    type Target = [(u64, u64)];

    fn deref(&self) -> &[(u64, u64)] {
        match self {
            Ranges::Empty => &[],
            Ranges::One(range) => std::slice::from_ref(range),
            Ranges::Many(ranges) => ranges,
        }
    }
}

impl Ranges {
    /// The room the heap holds for ranges (0 inline).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        match self {
            Ranges::Many(ranges) => ranges.capacity(),
            _ => 0,
        }
    }

    fn from_vec(ranges: Vec<(u64, u64)>) -> Self {
        match ranges.len() {
            0 => Ranges::Empty,
            1 => Ranges::One(ranges[0]),
            _ => Ranges::Many(ranges),
        }
    }

    /// Replaces the ranges at `at` with `with`, as [`Vec::splice`]; allocates only when the
    /// result has two ranges or more.
    fn splice(&mut self, at: std::ops::Range<usize>, with: &[(u64, u64)]) {
        let len = self.len() - at.len() + with.len();
        if let Ranges::Many(ranges) = self
            && len >= 2
        {
            ranges.splice(at, with.iter().copied());
            return;
        }
        let (before, after) = (&self[..at.start], &self[at.end..]);
        *self = match len {
            0 => Ranges::Empty,
            1 => Ranges::One(*before.iter().chain(with).chain(after).next().expect("one")),
            _ => {
                let mut ranges = Vec::with_capacity(len);
                ranges.extend_from_slice(before);
                ranges.extend_from_slice(with);
                ranges.extend_from_slice(after);
                Ranges::Many(ranges)
            }
        };
    }

    /// Gives back spare room once the set is well under its allocation, so a set cut down
    /// from a large one (a hostile digest filled to a few ranges) holds memory for what it
    /// keeps, not for what it once was: at most twice its ranges and a few; one range or none
    /// goes inline. It costs no more than the operation that shrank the set (both move at
    /// most its ranges).
    fn trim(&mut self) {
        if let Ranges::Many(ranges) = self {
            if ranges.len() < 2 {
                *self = Ranges::from_vec(std::mem::take(ranges));
            } else if ranges.capacity() > 2 * ranges.len() + 4 {
                ranges.shrink_to(ranges.len());
            }
        }
    }
}

impl fmt::Debug for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.ranges.iter().map(|(s, e)| s..=e))
            .finish()
    }
}

impl RangeSet {
    /// The empty set.
    pub const fn new() -> Self {
        RangeSet {
            ranges: Ranges::Empty,
        }
    }

    /// The set `start..=end`. Empty when `start > end`; a 0 start is raised to 1.
    pub fn from_range(start: u64, end: u64) -> Self {
        let mut set = RangeSet::new();
        set.insert_range(start, end);
        set
    }

    /// Parses the wire form: inclusive pairs `start0, end0, start1, end1, ...`, checked as
    /// `docs/PROTOCOL.md` §1 requires (even count, no 0, start <= end, sorted, disjoint, non-adjacent).
    pub fn from_wire(values: &[u64]) -> Result<Self, RangeError> {
        if !values.len().is_multiple_of(2) {
            return Err(RangeError::OddCount { len: values.len() });
        }
        let mut ranges = Vec::with_capacity(values.len() / 2);
        let mut previous_end: Option<u64> = None;
        for pair in values.chunks_exact(2) {
            let (start, end) = (pair[0], pair[1]);
            if start == 0 {
                return Err(RangeError::Zero);
            }
            if start > end {
                return Err(RangeError::StartAfterEnd { start, end });
            }
            if let Some(previous_end) = previous_end {
                // `start` must be at least `previous_end + 2`.
                if start <= previous_end.saturating_add(1) {
                    return Err(RangeError::NotSeparated {
                        previous_end,
                        start,
                    });
                }
            }
            previous_end = Some(end);
            ranges.push((start, end));
        }
        Ok(RangeSet {
            ranges: Ranges::from_vec(ranges),
        })
    }

    /// The wire form: inclusive pairs, flattened.
    pub fn to_wire(&self) -> Vec<u64> {
        self.ranges.iter().flat_map(|&(s, e)| [s, e]).collect()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The number of ranges (not of values).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The number of values, saturating at `u64::MAX`.
    pub fn len(&self) -> u64 {
        self.ranges
            .iter()
            .fold(0u64, |n, &(s, e)| n.saturating_add(e - s).saturating_add(1))
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> impl ExactSizeIterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().copied()
    }

    /// The largest value, if any.
    pub fn last(&self) -> Option<u64> {
        self.ranges.last().map(|&(_, e)| e)
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: u64) -> bool {
        // First range whose end is >= value.
        let i = self.ranges.partition_point(|&(_, e)| e < value);
        self.ranges.get(i).is_some_and(|&(s, _)| s <= value)
    }

    /// Adds `value`; returns whether it was new. 0 is ignored.
    pub fn insert(&mut self, value: u64) -> bool {
        if value == 0 || self.contains(value) {
            return false;
        }
        self.insert_range(value, value);
        true
    }

    /// Adds `start..=end` (0 is never added), merging touching ranges.
    pub fn insert_range(&mut self, start: u64, end: u64) {
        let start = start.max(1);
        if start > end {
            return;
        }
        // Ranges that overlap or touch [start, end] form one contiguous block [lo, hi).
        let lo = self
            .ranges
            .partition_point(|&(_, e)| e.saturating_add(1) < start);
        let hi = self
            .ranges
            .partition_point(|&(s, _)| s <= end.saturating_add(1));
        let (mut new_start, mut new_end) = (start, end);
        if lo < hi {
            new_start = new_start.min(self.ranges[lo].0);
            new_end = new_end.max(self.ranges[hi - 1].1);
        }
        self.ranges.splice(lo..hi, &[(new_start, new_end)]);
        if hi > lo + 1 {
            self.ranges.trim();
        }
    }

    /// Adds every value of `other`: in place when `other` is a few ranges (the common case
    /// of one new id), by a linear merge otherwise.
    pub fn union_with(&mut self, other: &RangeSet) {
        if self.ranges.is_empty() {
            self.ranges.clone_from(&other.ranges);
            self.ranges.trim();
            return;
        }
        if other.ranges.len() <= 4 {
            for &(s, e) in other.ranges.iter() {
                self.insert_range(s, e);
            }
            return;
        }
        let mut merged: Vec<(u64, u64)> =
            Vec::with_capacity(self.ranges.len() + other.ranges.len());
        let (mut a, mut b) = (
            self.ranges.iter().peekable(),
            other.ranges.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 <= y.0 => *a.next().expect("peeked"),
                (Some(_), Some(_)) | (None, Some(_)) => *b.next().expect("peeked"),
                (Some(_), None) => *a.next().expect("peeked"),
                (None, None) => break,
            };
            match merged.last_mut() {
                Some(last) if next.0 <= last.1.saturating_add(1) => last.1 = last.1.max(next.1),
                _ => merged.push(next),
            }
        }
        self.ranges = Ranges::from_vec(merged);
        self.ranges.trim();
    }

    /// Removes `start..=end`.
    pub fn remove_range(&mut self, start: u64, end: u64) {
        if start > end {
            return;
        }
        let lo = self.ranges.partition_point(|&(_, e)| e < start);
        let hi = self.ranges.partition_point(|&(s, _)| s <= end);
        if lo >= hi {
            return;
        }
        // What stays of the first and last ranges touched: at most two, no allocation.
        let (first_start, _) = self.ranges[lo];
        let (_, last_end) = self.ranges[hi - 1];
        let (mut keep, mut kept) = ([(0, 0); 2], 0);
        if first_start < start {
            keep[kept] = (first_start, start - 1);
            kept += 1;
        }
        if last_end > end {
            keep[kept] = (end + 1, last_end);
            kept += 1;
        }
        self.ranges.splice(lo..hi, &keep[..kept]);
        self.ranges.trim();
    }

    /// The values of `self` that are not in `other`.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::new();
        let mut j = 0;
        for &(mut s, e) in self.ranges.iter() {
            while j < other.ranges.len() && other.ranges[j].1 < s {
                j += 1;
            }
            // `s..=e` still to emit, unless covered to its end.
            let mut covered = false;
            let mut k = j;
            while let Some(&(os, oe)) = other.ranges.get(k).filter(|(os, _)| *os <= e) {
                if os > s {
                    out.push((s, os - 1));
                }
                if oe >= e {
                    covered = true;
                    break;
                }
                s = oe + 1;
                k += 1;
            }
            if !covered {
                out.push((s, e));
            }
        }
        RangeSet {
            ranges: Ranges::from_vec(out),
        }
    }

    /// The values in both sets.
    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a, b) = (self.ranges[i], other.ranges[j]);
            let (s, e) = (a.0.max(b.0), a.1.min(b.1));
            if s <= e {
                out.push((s, e));
            }
            if a.1 < b.1 { i += 1 } else { j += 1 }
        }
        RangeSet {
            ranges: Ranges::from_vec(out),
        }
    }

    /// Fills every gap below `value`: the ranges that start at or below it become one.
    pub(crate) fn fill_up_to(&mut self, value: u64) {
        let n = self.ranges.partition_point(|&(s, _)| s <= value);
        if n > 1 {
            let merged = (self.ranges[0].0, self.ranges[n - 1].1.max(value));
            self.ranges.splice(0..n, &[merged]);
            self.ranges.trim();
        }
    }

    /// The set of the given inclusive ranges, in any order, overlapping or not: one sort and
    /// one linear merge.
    pub(crate) fn from_unsorted(mut pairs: Vec<(u64, u64)>) -> RangeSet {
        pairs.retain(|&(s, e)| s <= e);
        pairs.sort_unstable();
        let mut ranges: Vec<(u64, u64)> = Vec::with_capacity(pairs.len());
        for (s, e) in pairs {
            let s = s.max(1);
            if s > e {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            }
        }
        let mut set = RangeSet {
            ranges: Ranges::from_vec(ranges),
        };
        set.ranges.trim();
        set
    }

    /// The ranges of `self` that share no value with `other`, whole: unlike
    /// [`RangeSet::difference`], never splits a range, so the count never grows.
    pub(crate) fn without_overlapping(&self, other: &RangeSet) -> RangeSet {
        let mut j = 0;
        let mut out = Vec::new();
        for &(s, e) in self.ranges.iter() {
            while j < other.ranges.len() && other.ranges[j].1 < s {
                j += 1;
            }
            let overlaps = other.ranges.get(j).is_some_and(|&(os, _)| os <= e);
            if !overlaps {
                out.push((s, e));
            }
        }
        RangeSet {
            ranges: Ranges::from_vec(out),
        }
    }

    /// Keeps at most `max` ranges by merging the lowest ranges together (filling the gaps
    /// between them). Returns whether anything was filled.
    pub(crate) fn fill_lowest_gaps(&mut self, max: usize) -> bool {
        let max = max.max(1);
        if self.ranges.len() <= max {
            return false;
        }
        let excess = self.ranges.len() - max;
        let merged = (self.ranges[0].0, self.ranges[excess].1);
        self.ranges.splice(0..excess + 1, &[merged]);
        self.ranges.trim();
        true
    }

    /// Keeps at most `max` ranges by dropping the lowest ones. Returns whether anything went.
    pub(crate) fn forget_lowest(&mut self, max: usize) -> bool {
        if self.ranges.len() <= max {
            return false;
        }
        let excess = self.ranges.len() - max;
        self.ranges.splice(0..excess, &[]);
        self.ranges.trim();
        true
    }
}

impl FromIterator<u64> for RangeSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut set = RangeSet::new();
        for v in iter {
            set.insert(v);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation leaves the ranges normalised: none or one inline, two or more on the
    /// heap (so equality and hashing are the values').
    #[test]
    fn one_range_or_none_is_kept_inline_after_every_operation() {
        let inline = |set: &RangeSet| !matches!(&set.ranges, Ranges::Many(r) if r.len() < 2);
        let mut x: u64 = 7;
        let mut next = |n: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) % n
        };
        let mut set = RangeSet::new();
        for _ in 0..20_000 {
            let (a, b) = (1 + next(64), 1 + next(64));
            let (lo, hi) = (a.min(b), a.max(b));
            match next(7) {
                0 => set.insert_range(lo, hi),
                1 => set.remove_range(lo, hi),
                2 => set.fill_up_to(lo),
                3 => {
                    set.fill_lowest_gaps(1 + next(3) as usize);
                }
                4 => {
                    set.forget_lowest(next(3) as usize);
                }
                5 => set.union_with(&RangeSet::from_range(lo, hi)),
                _ => set = set.difference(&RangeSet::from_range(lo, hi)),
            }
            assert!(inline(&set), "{set:?}");
            assert_eq!(
                RangeSet::from_wire(&set.to_wire()).as_ref(),
                Ok(&set),
                "equal to its own wire form"
            );
        }
        // The constructors that build from a list: results of one range go inline too.
        let one = RangeSet::from_range(1, 12);
        let collapsed = RangeSet::from_unsorted(vec![(10, 12), (1, 5), (3, 9)]);
        assert!(inline(&collapsed) && collapsed == one);
        let odd: RangeSet = (1..=12).step_by(2).collect();
        let even: RangeSet = (2..=12).step_by(2).collect();
        let mut merged = odd.clone();
        merged.union_with(&even); // more than four ranges: the linear merge
        assert!(inline(&merged) && merged == one);
        let narrow = odd.intersection(&RangeSet::from_range(3, 3));
        assert!(inline(&narrow) && narrow == RangeSet::from_range(3, 3));
        let apart = odd.without_overlapping(&RangeSet::from_range(1, 10));
        assert!(inline(&apart) && apart == RangeSet::from_range(11, 11));
    }

    #[test]
    fn a_set_cut_down_gives_back_its_room() {
        let wide: RangeSet = (0..32_767u64).map(|k| 1 + 2 * k).collect();
        let mut set = RangeSet::new();
        set.union_with(&wide);
        set.fill_lowest_gaps(64);
        assert_eq!(set.range_count(), 64);
        assert!(
            set.ranges.capacity() <= 2 * 64 + 4,
            "{}",
            set.ranges.capacity()
        );
        set.insert_range(1, u64::MAX);
        assert!(set.ranges.capacity() <= 6, "{}", set.ranges.capacity());
        let mut other: RangeSet = (0..1_000u64).map(|k| 1 + 2 * k).collect();
        other.remove_range(1, 1_990);
        assert!(other.ranges.capacity() <= 2 * other.range_count() + 4);
    }
    #[test]
    fn wire_form_rejects_every_malformed_list() {
        assert_eq!(
            RangeSet::from_wire(&[1, 5, 7]),
            Err(RangeError::OddCount { len: 3 })
        );
        assert_eq!(RangeSet::from_wire(&[0, 5]), Err(RangeError::Zero));
        assert_eq!(
            RangeSet::from_wire(&[5, 1]),
            Err(RangeError::StartAfterEnd { start: 5, end: 1 })
        );
        for bad in [[7, 9, 1, 3], [1, 5, 4, 9], [1, 5, 6, 9], [1, 5, 5, 9]] {
            assert!(
                matches!(
                    RangeSet::from_wire(&bad),
                    Err(RangeError::NotSeparated { .. })
                ),
                "{bad:?}"
            );
        }
        let max = RangeSet::from_wire(&[1, u64::MAX]).unwrap();
        assert_eq!(max.len(), u64::MAX);
        assert!(max.contains(u64::MAX));
        assert!(RangeSet::from_wire(&[1, 5, 7, 7, 10, 20]).is_ok());
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut set = RangeSet::from_range(u64::MAX - 1, u64::MAX);
        set.insert_range(1, u64::MAX - 3);
        assert_eq!(set.range_count(), 2);
        set.insert(u64::MAX - 2);
        assert_eq!(set.to_wire(), vec![1, u64::MAX]);
        assert!(set.difference(&set).is_empty());
        set.remove_range(u64::MAX, u64::MAX);
        assert_eq!(set.last(), Some(u64::MAX - 1));
        assert!(!set.insert(0));
    }

    #[test]
    fn caps_keep_the_newest_ranges() {
        let mut set: RangeSet = [1, 3, 5, 7, 9].into_iter().collect();
        assert!(set.clone().fill_lowest_gaps(3));
        let mut filled = set.clone();
        filled.fill_lowest_gaps(3);
        assert_eq!(filled.to_wire(), vec![1, 5, 7, 7, 9, 9]);
        set.forget_lowest(2);
        assert_eq!(set.to_wire(), vec![7, 7, 9, 9]);
        let wide = RangeSet::from_wire(&[1, 5, 8, 9, 12, 20]).unwrap();
        let hit = RangeSet::from_wire(&[3, 3, 15, 30]).unwrap();
        assert_eq!(wide.without_overlapping(&hit).to_wire(), vec![8, 9]);
        let mut gaps = wide.clone();
        gaps.fill_up_to(9);
        assert_eq!(gaps.to_wire(), vec![1, 9, 12, 20]);
    }
}
