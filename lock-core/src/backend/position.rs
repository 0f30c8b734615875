//! The recipe's position step: where one entry stands in its lock's ordered queue,
//! in the backend's own terms (its keys, its node names), read from [`decide`].

use super::{decide, Claim, Decision};

/// Where an entry stands in its lock's queue: what [`position`] answers.
///
/// # Examples
///
/// ```
/// use lock_core::backend::Position;
///
/// let waiting: Position<&str> = Position::WaitFor("node-1");
/// assert_eq!(waiting.map(str::len), Position::WaitFor(6));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position<K> {
    /// The entry holds: [`decide`] grants it.
    Owner,
    /// Wait until this entry leaves the queue; a [`Shared`](Claim::Shared) waiter
    /// also wakes when it signals its grant (see [`decide`]'s hand-off rule).
    WaitFor(K),
    /// The first [`Shared`](Claim::Shared) waiter: wait until any of these entries
    /// (the permits just ahead, oldest first) leaves the queue.
    WaitForAny(Vec<K>),
    /// The entry is not in the queue (deleted, or its lease or session ended).
    Missing,
}

impl<K> Position<K> {
    /// The same position with each entry mapped by `f` (for example a borrowed key
    /// to an owned one).
    pub fn map<U>(self, mut f: impl FnMut(K) -> U) -> Position<U> {
        match self {
            Position::Owner => Position::Owner,
            Position::WaitFor(k) => Position::WaitFor(f(k)),
            Position::WaitForAny(ks) => Position::WaitForAny(ks.into_iter().map(f).collect()),
            Position::Missing => Position::Missing,
        }
    }
}

/// The position of entry `own` in `queue`: one lock's entries **in arrival order**
/// (oldest first, each once), each with its claim, as the backend read them (etcd:
/// keys by create revision; ZooKeeper: node names by sequence). [`decide`] says
/// whether `own` holds, and names the entries it waits for.
///
/// `own` is compared with each entry's `K` (for example a borrowed key or node
/// name of any lifetime). `queue` may be any subset of the lock's queue, as long as it holds `own` and
/// every entry [`decide`] would name for it. [`Position::Missing`] when `own` is not
/// in `queue`.
///
/// # Examples
///
/// ```
/// use lock_core::backend::{position, Claim, Position};
///
/// let (w, r) = (Claim::Write, Claim::Read);
/// let queue = [("w1", w), ("r1", r), ("w2", w), ("r2", r)];
/// assert_eq!(position(&queue, &"w1"), Position::Owner);
/// assert_eq!(position(&queue, &"r1"), Position::WaitFor("w1"));
/// assert_eq!(position(&queue, &"r2"), Position::WaitFor("w2"), "no overtaking");
/// assert_eq!(position(&queue, &"gone"), Position::Missing);
/// ```
pub fn position<K, Q>(queue: &[(K, Claim)], own: &Q) -> Position<K>
where
    K: PartialEq<Q> + Clone,
    Q: ?Sized,
{
    let Some(index) = queue.iter().position(|(k, _)| k == own) else {
        return Position::Missing;
    };
    let claims: Vec<Claim> = queue.iter().map(|(_, claim)| *claim).collect();
    match decide(&claims, index) {
        Some(Decision::Granted) => Position::Owner,
        Some(Decision::WaitFor(ahead)) => queue
            .get(ahead)
            .map_or(Position::Missing, |(k, _)| Position::WaitFor(k.clone())),
        Some(Decision::WaitForAny { from }) => {
            Position::WaitForAny(queue[from..index].iter().map(|(k, _)| k.clone()).collect())
        }
        None => Position::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: Claim = Claim::Exclusive;

    #[test]
    fn a_mutex_queue_grants_the_head_and_each_waits_for_the_one_ahead() {
        let q = [(10, X), (20, X), (30, X)];
        assert_eq!(position(&q, &10), Position::Owner);
        assert_eq!(position(&q, &20), Position::WaitFor(10));
        assert_eq!(position(&q, &30), Position::WaitFor(20));
        assert_eq!(position(&q, &40), Position::Missing);
        assert_eq!(position::<i32, i32>(&[], &10), Position::Missing);
    }

    #[test]
    fn the_first_permit_waiter_watches_every_permit_ahead_the_next_the_one_ahead() {
        let s = Claim::Shared { limit: 2 };
        let q = [("x", X), ("a", s), ("b", s), ("c", s), ("d", s)];
        assert_eq!(position(&q, &"a"), Position::WaitFor("x"));
        assert_eq!(position(&q, &"b"), Position::WaitFor("x"));
        assert_eq!(position(&q, &"c"), Position::WaitForAny(vec!["a", "b"]));
        assert_eq!(position(&q, &"d"), Position::WaitFor("c"));
        assert_eq!(position(&q[1..], &"b"), Position::Owner);
    }

    #[test]
    fn readers_share_and_wait_for_the_nearest_earlier_writer() {
        let (r, w) = (Claim::Read, Claim::Write);
        let q = [("r1", r), ("r2", r), ("w1", w), ("r3", r), ("r4", r)];
        assert_eq!(position(&q, &"r2"), Position::Owner);
        assert_eq!(position(&q, &"w1"), Position::WaitFor("r2"));
        assert_eq!(position(&q, &"r4"), Position::WaitFor("w1"));
    }

    #[test]
    fn position_agrees_with_decide_on_every_small_queue() {
        let kinds = [
            X,
            Claim::Read,
            Claim::Write,
            Claim::Shared { limit: 1 },
            Claim::Shared { limit: 2 },
        ];
        let mut queues: Vec<Vec<Claim>> = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<Claim>> = queues
                .iter()
                .filter(|q| q.len() == queues.last().map_or(0, Vec::len))
                .flat_map(|q| {
                    kinds.iter().map(move |k| {
                        let mut q = q.clone();
                        q.push(*k);
                        q
                    })
                })
                .collect();
            queues.extend(longer);
        }
        for claims in &queues {
            let q: Vec<(usize, Claim)> = claims.iter().copied().enumerate().collect();
            for i in 0..q.len() {
                let want = match decide(claims, i).unwrap() {
                    Decision::Granted => Position::Owner,
                    Decision::WaitFor(j) => Position::WaitFor(j),
                    Decision::WaitForAny { from } => Position::WaitForAny((from..i).collect()),
                };
                assert_eq!(position(&q, &i), want, "{claims:?} {i}");
            }
        }
    }

    #[test]
    fn map_keeps_the_variant() {
        let p: Position<&[u8]> = Position::WaitForAny(vec![b"a", b"b"]);
        assert_eq!(
            p.map(<[u8]>::to_vec),
            Position::WaitForAny(vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert_eq!(Position::<u8>::Owner.map(u32::from), Position::Owner);
        assert_eq!(Position::<u8>::Missing.map(u32::from), Position::Missing);
    }
}
