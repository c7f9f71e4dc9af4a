//! The iteration order of a CPython `set` of small non-negative integers.
//!
//! Swift picks the fragment index it serves under fragment preferences as
//! `list(set(available) - set(excluded))[-1]`: the last element in the
//! set's iteration order, which is the order of the set's hash table
//! slots. For integers `hash(i) == i`, so the order is ascending only while
//! every index is below the table size; past that, collisions and table
//! growth reorder it. To pick the same fragment as Swift, this models the
//! hash table of CPython's `setobject.c` (3.x: linear probing of 9 slots,
//! perturbation, growth when 3/5 full) for exactly the operations used.

const MIN_SIZE: usize = 8;
const LINEAR_PROBES: usize = 9;
const PERTURB_SHIFT: u32 = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Empty,
    Dummy,
    Key(u64),
}

#[derive(Clone)]
struct PySet {
    table: Vec<Slot>,
    fill: usize,
    used: usize,
}

impl PySet {
    fn new() -> Self {
        PySet {
            table: vec![Slot::Empty; MIN_SIZE],
            fill: 0,
            used: 0,
        }
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    fn from_keys(keys: &[u64]) -> Self {
        let mut s = PySet::new();
        for &k in keys {
            s.add(k);
        }
        s
    }

    /// `set_add_entry`.
    fn add(&mut self, key: u64) {
        let mask = self.mask();
        let mut perturb = key as usize;
        let mut i = key as usize & mask;
        let mut freeslot: Option<usize> = None;
        let found = loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            let mut hit = None;
            for j in i..=i + probes {
                match self.table[j] {
                    Slot::Empty => {
                        hit = Some(j);
                        break;
                    }
                    Slot::Key(k) if k == key => return,
                    Slot::Dummy if freeslot.is_none() => freeslot = Some(j),
                    _ => {}
                }
            }
            if let Some(j) = hit {
                break j;
            }
            perturb >>= PERTURB_SHIFT;
            i = (i.wrapping_mul(5).wrapping_add(1).wrapping_add(perturb)) & mask;
        };
        if let Some(free) = freeslot {
            self.used += 1;
            self.table[free] = Slot::Key(key);
            return;
        }
        self.fill += 1;
        self.used += 1;
        self.table[found] = Slot::Key(key);
        if self.fill * 5 < mask * 3 {
            return;
        }
        let minused = if self.used > 50_000 {
            self.used * 2
        } else {
            self.used * 4
        };
        self.resize(minused);
    }

    /// `set_table_resize`.
    fn resize(&mut self, minused: usize) {
        let mut size = MIN_SIZE;
        while size <= minused {
            size <<= 1;
        }
        let old = std::mem::replace(&mut self.table, vec![Slot::Empty; size]);
        self.fill = self.used;
        for slot in old {
            if let Slot::Key(k) = slot {
                insert_clean(&mut self.table, k);
            }
        }
    }

    /// `set_merge` into an empty set (what `set_copy` does).
    fn copy(&self) -> Self {
        let mut out = PySet::new();
        if self.used == 0 {
            return out;
        }
        if (out.fill + self.used) * 5 >= out.mask() * 3 {
            out.resize((out.used + self.used) * 2);
        }
        if out.mask() == self.mask() && self.fill == self.used {
            out.table = self
                .table
                .iter()
                .map(|s| match s {
                    Slot::Key(k) => Slot::Key(*k),
                    _ => Slot::Empty,
                })
                .collect();
        } else {
            for k in self.keys() {
                insert_clean(&mut out.table, k);
            }
        }
        out.fill = self.used;
        out.used = self.used;
        out
    }

    fn contains(&self, key: u64) -> bool {
        self.table.contains(&Slot::Key(key))
    }

    fn discard(&mut self, key: u64) {
        if let Some(slot) = self.table.iter_mut().find(|s| **s == Slot::Key(key)) {
            *slot = Slot::Dummy;
            self.used -= 1;
        }
    }

    /// Iteration order: table slot order.
    fn keys(&self) -> Vec<u64> {
        self.table
            .iter()
            .filter_map(|s| match s {
                Slot::Key(k) => Some(*k),
                _ => None,
            })
            .collect()
    }

    /// `set_difference` (`self - other`).
    fn difference(&self, other: &PySet) -> PySet {
        if (self.used >> 2) > other.used {
            let mut out = self.copy();
            for k in other.keys() {
                out.discard(k);
            }
            return out;
        }
        let mut out = PySet::new();
        for k in self.keys() {
            if !other.contains(k) {
                out.add(k);
            }
        }
        out
    }
}

/// `set_insert_clean`: insertion into a table without dummies or equal keys.
fn insert_clean(table: &mut [Slot], key: u64) {
    let mask = table.len() - 1;
    let mut perturb = key as usize;
    let mut i = key as usize & mask;
    loop {
        if table[i] == Slot::Empty {
            table[i] = Slot::Key(key);
            return;
        }
        if i + LINEAR_PROBES <= mask {
            if let Some(slot) = table[i + 1..=i + LINEAR_PROBES]
                .iter_mut()
                .find(|s| **s == Slot::Empty)
            {
                *slot = Slot::Key(key);
                return;
            }
        }
        perturb >>= PERTURB_SHIFT;
        i = (i.wrapping_mul(5).wrapping_add(1).wrapping_add(perturb)) & mask;
    }
}

/// `list(set(available) - set(exclude))`, in CPython's order.
pub(crate) fn set_difference_list(available: &[u32], exclude: &[u32]) -> Vec<u32> {
    let a: Vec<u64> = available.iter().map(|&i| u64::from(i)).collect();
    let b: Vec<u64> = exclude.iter().map(|&i| u64::from(i)).collect();
    PySet::from_keys(&a)
        .difference(&PySet::from_keys(&b))
        .keys()
        .into_iter()
        .filter_map(|k| u32::try_from(k).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_indexes_iterate_in_ascending_order() {
        assert_eq!(set_difference_list(&[3, 1, 2], &[]), [1, 2, 3]);
        assert_eq!(set_difference_list(&[0, 1, 2, 3], &[1]), [0, 2, 3]);
        assert!(set_difference_list(&[4], &[4]).is_empty());
    }

    #[test]
    fn colliding_indexes_do_not() {
        // 10 lands in slot 2 of an 8-slot table, before 3 in slot 3.
        assert_eq!(set_difference_list(&[3, 10], &[]), [10, 3]);
    }
}
