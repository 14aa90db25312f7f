//! Tables of exceptions compared: the origin chunks two tables map differently (the load check's I6, the incremental read-back's rereads).

/// The origin chunks, in order, that two tables map differently or only one
/// of them maps; each table is `(origin chunk, COW chunk)` pairs in
/// origin-chunk order, one per chunk.
pub(super) fn differing_chunks(a: impl IntoIterator<Item = (u64, u64)>, b: impl IntoIterator<Item = (u64, u64)>) -> impl Iterator<Item = u64> {
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    std::iter::from_fn(move || {
        loop {
            match (a.peek().copied(), b.peek().copied()) {
                (None, None) => return None,
                (Some(x), Some(y)) if x == y => {
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 == y.0 => {
                    a.next();
                    b.next();
                    return Some(x.0);
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    a.next();
                    return Some(x.0);
                }
                (Some(x), None) => {
                    a.next();
                    return Some(x.0);
                }
                (_, Some(y)) => {
                    b.next();
                    return Some(y.0);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::differing_chunks;

    fn differing(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<u64> {
        differing_chunks(a.iter().copied(), b.iter().copied()).collect()
    }

    #[test]
    fn chunks_mapped_differently_or_by_one_table_alone_differ_in_order() {
        assert_eq!(differing(&[(1, 5), (3, 6)], &[(1, 5), (3, 6)]), Vec::<u64>::new());
        assert_eq!(differing(&[(1, 5), (3, 6)], &[(1, 5), (3, 7)]), vec![3]);
        assert_eq!(differing(&[(1, 5), (3, 6)], &[(1, 5), (2, 9), (3, 6)]), vec![2]);
        assert_eq!(differing(&[(1, 5), (3, 6), (4, 8)], &[(1, 5), (3, 6)]), vec![4]);
        assert_eq!(differing(&[], &[(0, 2)]), vec![0]);
        // Added, removed and moved together, in origin-chunk order.
        assert_eq!(differing(&[(0, 10), (1, 11), (2, 30), (5, 31), (8, 20)], &[(0, 10), (1, 11), (2, 12), (8, 20)]), vec![2, 5]);
        assert_eq!(differing(&[], &[(0, 10), (1, 11), (2, 12), (8, 20)]), vec![0, 1, 2, 8]);
    }
}
