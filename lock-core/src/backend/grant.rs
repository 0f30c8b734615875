//! The grant policy: one pure function that decides, from a lock's ordered queue,
//! whether an entry holds and which single entry it waits for.
//!
//! Every primitive is one FIFO queue per name plus this rule; a backend only enqueues,
//! reads the queue in arrival order (etcd: create revision, ZooKeeper: sequence,
//! memory: insertion), watches the one entry [`decide`] names, and deletes.

/// What one queue entry asks for.
///
/// Two entries may hold at the same time only if they are *compatible*:
///
/// | claim | compatible with |
/// |---|---|
/// | [`Exclusive`](Claim::Exclusive), [`Write`](Claim::Write) | nothing |
/// | [`Read`](Claim::Read) | `Read` |
/// | [`Shared { limit }`](Claim::Shared) | `Shared` with the *same* `limit`, at most `limit` of them |
///
/// Every other pair conflicts, so a kind that does not belong to a primitive acts as a
/// barrier for it: mixing kinds under one name never over-grants, it only serializes.
///
/// # Examples
///
/// ```
/// use lock_core::backend::Claim;
///
/// let mutex = Claim::Exclusive;
/// let permit = Claim::Shared { limit: 3 }; // one of at most 3 holders
/// assert_ne!(mutex, permit);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Claim {
    /// A mutex: the only holder.
    Exclusive,
    /// A permit of a counting semaphore with `limit` permits. A `limit` of 0 is read as
    /// 1 (backends should reject it as invalid config before enqueueing).
    Shared {
        /// How many entries may hold at once.
        limit: u32,
    },
    /// The read side of a read-write lock: shares with other readers.
    Read,
    /// The write side of a read-write lock: the only holder.
    Write,
}

/// What [`decide`] says about one queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The entry holds.
    Granted,
    /// The entry waits until the entry at this index (always an earlier one) leaves
    /// the queue; then the caller reads the queue again and calls [`decide`] again.
    /// For a [`Shared`](Claim::Shared) entry it also wakes when that entry *signals
    /// its grant* (see [`decide`]'s semaphore hand-off rule).
    WaitFor(usize),
    /// Only for the first waiting [`Shared`](Claim::Shared) entry: it waits until
    /// *any* entry at `from..index` (the `limit` permits just ahead of it) leaves
    /// the queue, so a permit freed out of queue order is handed on at once. A grant
    /// signal of these entries may wake it too (harmless: it reads again).
    WaitForAny {
        /// The first of the entries to watch; the last is the one just ahead.
        from: usize,
    },
}

/// Decides whether `queue[index]` is granted, or which single earlier entry it waits
/// for. `queue` is one lock's queue in arrival order (oldest first). Returns `None`
/// when `index` is outside the queue.
///
/// # Rules
///
/// - **Exclusive / Write**: granted at index 0; otherwise waits for its immediate
///   predecessor.
/// - **Read**: granted when every entry ahead is a `Read`; otherwise waits for the
///   nearest earlier non-`Read` entry (kazoo's rule: waiting for the *first* writer
///   instead wakes needlessly, and waiting for a later entry can deadlock).
/// - **Shared { limit }**: take the run of `Shared { limit }` entries (same limit)
///   directly ahead of it, back to the nearest earlier entry of any other claim (the
///   *barrier*). With `rank` the number of entries in that run ahead of it:
///   - `rank > limit`: it waits for the entry just ahead (`index - 1`), another
///     waiter, until that one leaves or signals its grant;
///   - `rank == limit` (the first waiter): it waits for *any* of the `limit` entries
///     just ahead ([`WaitForAny`](Decision::WaitForAny)), so whichever permit is
///     freed first is handed on;
///   - `rank < limit`: if there is a barrier it waits for the barrier; else it is
///     granted.
///
///   In a queue of only `Shared { limit }` entries, the first `limit` hold, the next
///   one watches all of them, and each later one watches the one just ahead.
///
/// # The semaphore hand-off rule (what a backend must do)
///
/// A `Shared` entry that is granted **signals its grant once**, with a write to its
/// own entry that keeps its place in the queue (etcd: a put that keeps the key's
/// create revision; ZooKeeper: a `setData` on its node), unless it knows nothing
/// queued behind it could have read it as waiting (its grant was decided on a read
/// that showed nothing behind it). The waiter just behind it wakes on that signal,
/// reads again and becomes the first waiter. Without it, the entry behind would keep
/// watching an entry that no longer waits and miss the next freed permit.
///
/// # Guarantees
///
/// - **Safety**: the granted entries are pairwise compatible (see [`Claim`]), and a
///   granted `Shared { limit }` entry shares with at most `limit - 1` others.
/// - **FIFO, no starvation**: the granted entries are always a prefix of the queue,
///   and the longest compatible one, so no entry is overtaken by a later one (a reader
///   behind a waiting writer waits too).
/// - **Stable**: a granted entry stays granted when other entries leave or new ones
///   arrive at the back.
/// - **Progress**: a waiter always waits for a strictly earlier entry, so there are no
///   cycles; when that entry leaves, the waiter is granted or waits for an entry
///   earlier still. Index 0 is always granted.
/// - **No missed grant, no herd**: a waiter is woken whenever a departure (or, for
///   `Shared`, a grant signal) may grant it, so a freed permit or lock is never left
///   unused while someone waits. Each waiter watches one entry, except the single
///   first waiter of a semaphore, which watches the `limit` permits ahead of it; a
///   departure wakes at most one waiter per kind (or only readers that are all
///   granted), and a semaphore grant wakes the one waiter behind it.
///
/// # Non-guarantees
///
/// - The semaphore hand-off rule costs one write per permit granted while others
///   queue behind it; if a holder dies between its grant and that write, the waiter
///   behind it waits for the holder's entry to go (its lease to expire) before it
///   watches the other permits again.
/// - Mixing claims under one name serializes them; it is the backend's job to reject
///   a `Shared` limit that differs from the live entries' (as kazoo does), not this
///   function's.
///
/// # Examples
///
/// ```
/// use lock_core::backend::{decide, Claim, Decision};
///
/// // A mutex: the head holds, everyone else waits for the entry just ahead.
/// let q = [Claim::Exclusive, Claim::Exclusive, Claim::Exclusive];
/// assert_eq!(decide(&q, 0), Some(Decision::Granted));
/// assert_eq!(decide(&q, 2), Some(Decision::WaitFor(1)));
/// assert_eq!(decide(&q, 3), None);
///
/// // A read-write lock: readers share, and a reader behind a writer waits for it.
/// let q = [Claim::Read, Claim::Read, Claim::Write, Claim::Read];
/// assert_eq!(decide(&q, 1), Some(Decision::Granted));
/// assert_eq!(decide(&q, 2), Some(Decision::WaitFor(1)));
/// assert_eq!(decide(&q, 3), Some(Decision::WaitFor(2)));
///
/// // A semaphore with 2 permits: the first waiter watches both permits ahead,
/// // the next one the waiter just ahead.
/// let s = Claim::Shared { limit: 2 };
/// let q = [s, s, s, s];
/// assert_eq!(decide(&q, 1), Some(Decision::Granted));
/// assert_eq!(decide(&q, 2), Some(Decision::WaitForAny { from: 0 }));
/// assert_eq!(decide(&q, 3), Some(Decision::WaitFor(2)));
/// ```
pub fn decide(queue: &[Claim], index: usize) -> Option<Decision> {
    let claim = *queue.get(index)?;
    let ahead = &queue[..index];
    let decision = match claim {
        Claim::Exclusive | Claim::Write => match index.checked_sub(1) {
            None => Decision::Granted,
            Some(predecessor) => Decision::WaitFor(predecessor),
        },
        Claim::Read => match ahead.iter().rposition(|c| *c != Claim::Read) {
            None => Decision::Granted,
            Some(barrier) => Decision::WaitFor(barrier),
        },
        Claim::Shared { limit } => {
            let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
            let barrier = ahead.iter().rposition(|c| *c != claim);
            let rank = index - barrier.map_or(0, |b| b + 1);
            if rank > limit {
                Decision::WaitFor(index - 1)
            } else if rank == limit {
                Decision::WaitForAny {
                    from: index - limit,
                }
            } else {
                barrier.map_or(Decision::Granted, Decision::WaitFor)
            }
        }
    };
    Some(decision)
}

/// Refuses a claim `caps` does not support, before anything is enqueued: what every
/// backend's [`LeaseBackend::acquire`](super::LeaseBackend::acquire) calls first, so an
/// unsupported policy is a typed error and never a wrong grant.
///
/// # Errors
///
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) naming the claim, the
/// backend's `scheme` and the lock.
///
/// # Examples
///
/// ```
/// use lock_core::{backend::{check_claim, Claim}, Capabilities, ErrorKind, LockName, TokenSource};
///
/// let caps = Capabilities::new(TokenSource::Counter);
/// let name = LockName::new("jobs").unwrap();
/// assert!(check_claim(&caps, "memory", Claim::Exclusive, &name).is_ok());
/// let err = check_claim(&caps, "memory", Claim::Read, &name).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Unsupported);
/// ```
pub fn check_claim(
    caps: &crate::Capabilities,
    scheme: &str,
    claim: Claim,
    name: &crate::LockName,
) -> crate::Result<()> {
    if caps.supports(claim) {
        return Ok(());
    }
    Err(crate::Error::new(
        crate::ErrorKind::Unsupported,
        format!("the {scheme} backend does not grant {claim:?} claims (lock {name})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::{Granted, WaitFor, WaitForAny};

    fn all(queue: &[Claim]) -> Vec<Decision> {
        (0..queue.len())
            .map(|i| decide(queue, i).unwrap())
            .collect()
    }

    #[test]
    fn policy_fifo_one_holder_each_waits_for_the_one_ahead() {
        let x = Claim::Exclusive;
        assert_eq!(all(&[x, x, x]), [Granted, WaitFor(0), WaitFor(1)]);
    }

    #[test]
    fn policy_readers_share_up_to_the_first_writer() {
        let (r, w) = (Claim::Read, Claim::Write);
        assert_eq!(all(&[r, r, r]), [Granted, Granted, Granted]);
        assert_eq!(all(&[w, r, r]), [Granted, WaitFor(0), WaitFor(0)]);
    }

    #[test]
    fn policy_no_writer_starvation_later_readers_queue_behind_a_waiting_writer() {
        let (r, w) = (Claim::Read, Claim::Write);
        assert_eq!(
            all(&[r, r, w, r]),
            [Granted, Granted, WaitFor(1), WaitFor(2)]
        );
    }

    #[test]
    fn policy_semaphore_limit_caps_the_holders() {
        let s = Claim::Shared { limit: 2 };
        assert_eq!(
            all(&[s, s, s, s]),
            [Granted, Granted, WaitForAny { from: 0 }, WaitFor(2)]
        );
        let zero = Claim::Shared { limit: 0 };
        assert_eq!(
            all(&[zero, zero]),
            [Granted, WaitForAny { from: 0 }],
            "0 counts as 1"
        );
    }

    #[test]
    fn policy_limit_disagreement_serializes_never_over_grants() {
        let (two, three) = (Claim::Shared { limit: 2 }, Claim::Shared { limit: 3 });
        assert_eq!(
            all(&[two, three, three, two]),
            [Granted, WaitFor(0), WaitFor(0), WaitFor(2)]
        );
    }

    #[test]
    fn policy_mixed_kinds_are_barriers() {
        let (x, r, s) = (Claim::Exclusive, Claim::Read, Claim::Shared { limit: 5 });
        assert_eq!(all(&[r, s, x]), [Granted, WaitFor(0), WaitFor(1)]);
    }

    const KINDS: [Claim; 6] = [
        Claim::Exclusive,
        Claim::Read,
        Claim::Write,
        Claim::Shared { limit: 1 },
        Claim::Shared { limit: 2 },
        Claim::Shared { limit: 3 },
    ];

    /// Every queue of up to `max` entries over [`KINDS`].
    fn queues(max: usize) -> Vec<Vec<Claim>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|q: &Vec<Claim>| {
                    KINDS.iter().map(move |k| {
                        let mut q = q.clone();
                        q.push(*k);
                        q
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    fn compatible(a: Claim, b: Claim) -> bool {
        match (a, b) {
            (Claim::Read, Claim::Read) => true,
            (Claim::Shared { limit: x }, Claim::Shared { limit: y }) => x == y,
            _ => false,
        }
    }

    fn limit_of(c: Claim) -> usize {
        match c {
            Claim::Shared { limit } => limit.max(1) as usize,
            _ => usize::MAX,
        }
    }

    /// The reference model: walk the queue from the front and grant each entry that is
    /// compatible with everything granted so far (within its limit); stop at the first
    /// one that is not (FIFO: nothing overtakes a waiter).
    fn reference(queue: &[Claim]) -> Vec<bool> {
        let mut granted = vec![false; queue.len()];
        for (i, c) in queue.iter().enumerate() {
            let ok = queue[..i].iter().all(|a| compatible(*a, *c)) && i < limit_of(*c);
            if !ok {
                break;
            }
            granted[i] = true;
        }
        granted
    }

    fn granted(queue: &[Claim]) -> Vec<bool> {
        (0..queue.len())
            .map(|i| decide(queue, i) == Some(Decision::Granted))
            .collect()
    }

    /// `queue` without the entries whose bit is set in `mask`, and the new index of
    /// each kept entry.
    fn without(queue: &[Claim], mask: u32) -> (Vec<Claim>, Vec<Option<usize>>) {
        let mut kept = Vec::new();
        let mut at = Vec::new();
        for (i, c) in queue.iter().enumerate() {
            if mask & (1 << i) == 0 {
                at.push(Some(kept.len()));
                kept.push(*c);
            } else {
                at.push(None);
            }
        }
        (kept, at)
    }

    #[test]
    fn index_outside_the_queue_is_none() {
        assert_eq!(decide(&[], 0), None);
        assert_eq!(decide(&[Claim::Read], 1), None);
        assert_eq!(decide(&[Claim::Read], usize::MAX), None);
    }

    #[test]
    fn mutex_head_holds_and_each_waiter_waits_for_its_predecessor() {
        let q = [Claim::Exclusive; 4];
        assert_eq!(decide(&q, 0), Some(Decision::Granted));
        for i in 1..4 {
            assert_eq!(decide(&q, i), Some(Decision::WaitFor(i - 1)));
        }
    }

    #[test]
    fn reader_waits_for_the_nearest_earlier_writer_kazoo_649() {
        // W1 holds, R waits, W2 waits: R must wait for W1 and W2 for R (no cycle).
        let q = [
            Claim::Write,
            Claim::Read,
            Claim::Write,
            Claim::Read,
            Claim::Read,
        ];
        assert_eq!(decide(&q, 0), Some(Decision::Granted));
        assert_eq!(decide(&q, 1), Some(Decision::WaitFor(0)));
        assert_eq!(decide(&q, 2), Some(Decision::WaitFor(1)));
        assert_eq!(decide(&q, 3), Some(Decision::WaitFor(2)));
        assert_eq!(decide(&q, 4), Some(Decision::WaitFor(2)));
        // A reader behind a waiting writer does not overtake it.
        let q = [Claim::Read, Claim::Write, Claim::Read];
        assert_eq!(granted(&q), [true, false, false]);
    }

    #[test]
    fn semaphore_grants_limit_entries_then_one_waiter_watches_them_all() {
        let s = Claim::Shared { limit: 2 };
        let q = [s; 5];
        assert_eq!(granted(&q), [true, true, false, false, false]);
        assert_eq!(decide(&q, 2), Some(WaitForAny { from: 0 }));
        assert_eq!(decide(&q, 3), Some(WaitFor(2)));
        assert_eq!(decide(&q, 4), Some(WaitFor(3)));
        // Behind a barrier: the first `limit` of the run wait for the barrier, the
        // next one for any of them, the rest for the one just ahead.
        let q = [Claim::Exclusive, s, s, s, s];
        assert_eq!(decide(&q, 1), Some(WaitFor(0)));
        assert_eq!(decide(&q, 2), Some(WaitFor(0)));
        assert_eq!(decide(&q, 3), Some(WaitForAny { from: 1 }));
        assert_eq!(decide(&q, 4), Some(WaitFor(3)));
        // A different limit is a barrier; a zero limit counts as one.
        let q = [s, Claim::Shared { limit: 3 }];
        assert_eq!(decide(&q, 1), Some(Decision::WaitFor(0)));
        let z = Claim::Shared { limit: 0 };
        assert_eq!(granted(&[z, z]), [true, false]);
    }

    /// Every queue up to 5 entries: decide agrees with the reference model, the granted
    /// entries are a maximal compatible prefix, and every waiter waits for an earlier
    /// entry that is not granted-compatible with it.
    #[test]
    fn exhaustive_agrees_with_the_reference_model() {
        let all = queues(5);
        assert_eq!(all.len(), 1 + 6 + 36 + 216 + 1296 + 7776);
        for q in &all {
            let got = granted(q);
            assert_eq!(got, reference(q), "{q:?}");
            // A prefix...
            let holders = got.iter().take_while(|g| **g).count();
            assert!(got[holders..].iter().all(|g| !g), "not a prefix: {q:?}");
            // ...pairwise compatible and within every holder's limit...
            for i in 0..holders {
                assert!(holders <= limit_of(q[i]), "over the limit: {q:?}");
                for j in 0..i {
                    assert!(compatible(q[j], q[i]), "incompatible holders: {q:?}");
                }
            }
            // ...and maximal: the next entry could not join.
            if let Some(next) = q.get(holders) {
                let joins =
                    q[..holders].iter().all(|h| compatible(*h, *next)) && holders < limit_of(*next);
                assert!(!joins, "not maximal: {q:?}");
            }
            assert!(q.is_empty() || got[0], "head not granted: {q:?}");
            for i in 0..q.len() {
                if let Some(set) = watched(q, i) {
                    assert!(!set.is_empty(), "waits for nothing: {q:?} {i}");
                    assert!(
                        set.iter().all(|j| *j < i),
                        "waits for a later entry: {q:?} {i}"
                    );
                }
            }
        }
    }

    /// The entries `queue[index]` watches: `None` when granted.
    fn watched(queue: &[Claim], index: usize) -> Option<Vec<usize>> {
        match decide(queue, index)? {
            Decision::Granted => None,
            Decision::WaitFor(j) => Some(vec![j]),
            Decision::WaitForAny { from } => Some((from..index).collect()),
        }
    }

    /// The watched entries are the ones to watch: a departure of one of them may grant
    /// the waiter; while all of them are queued nothing else grants it, except a Shared
    /// waiter watching the (waiting) Shared entry just ahead, which that entry's grant
    /// signal wakes; when one leaves, the waiter is granted or again watches only
    /// entries ahead of it (so the waits-for graph never has a cycle).
    #[test]
    fn exhaustive_watched_entries_are_the_ones_to_watch() {
        for q in &queues(5) {
            for i in 0..q.len() {
                let Some(set) = watched(q, i) else {
                    continue;
                };
                let set_mask = set.iter().fold(0u32, |m, j| m | (1 << j));
                let mut may_grant = false;
                let mut blocks_alone = true;
                // Every set of departures of other entries (neither i nor a watched one).
                for mask in 0..(1u32 << q.len()) {
                    if mask & ((1 << i) | set_mask) != 0 {
                        continue;
                    }
                    let (rest, at) = without(q, mask);
                    let held = decide(&rest, at[i].unwrap()) == Some(Decision::Granted);
                    blocks_alone &= !held;
                    for j in &set {
                        let (gone, at2) = without(q, mask | (1 << j));
                        let after = decide(&gone, at2[i].unwrap()) == Some(Decision::Granted);
                        may_grant |= !held && after;
                    }
                }
                assert!(
                    may_grant,
                    "{q:?}: {i} watches {set:?}, whose departure never grants it"
                );
                let signalled = set.len() == 1
                    && set[0] + 1 == i
                    && q[set[0]] == q[i]
                    && matches!(q[i], Claim::Shared { .. })
                    && decide(q, set[0]) != Some(Decision::Granted);
                assert!(
                    blocks_alone || signalled,
                    "{q:?}: {i} can be granted while {set:?} are still queued"
                );
                for j in &set {
                    let (gone, at) = without(q, 1 << j);
                    let back = |n: usize| at.iter().position(|a| *a == Some(n)).unwrap();
                    if let Some(again) = watched(&gone, at[i].unwrap()) {
                        assert!(
                            again.iter().all(|n| back(*n) < i),
                            "{q:?}: {i} re-waits on a later entry after {j} left"
                        );
                    }
                }
            }
        }
    }

    /// One entry's state: `Held`, or watching the entries with these ids.
    #[derive(Clone, PartialEq, Eq, Debug)]
    enum State {
        Held,
        Watching(Vec<usize>),
    }

    /// The watch protocol on a queue of `(id, claim)`: (re)decide entry `at`.
    fn settle(queue: &[(usize, Claim)], at: usize) -> State {
        let claims: Vec<Claim> = queue.iter().map(|(_, c)| *c).collect();
        match watched(&claims, at) {
            None => State::Held,
            Some(set) => State::Watching(set.into_iter().map(|j| queue[j].0).collect()),
        }
    }

    /// Wakes every waiter watching `id`, and, the hand-off rule, every waiter
    /// watching a Shared entry that the wake-up granted, until nothing changes.
    fn wake(queue: &[(usize, Claim)], states: &mut [State], id: usize) {
        let mut signals = vec![id];
        while let Some(id) = signals.pop() {
            for k in 0..queue.len() {
                if matches!(&states[k], State::Watching(set) if set.contains(&id)) {
                    states[k] = settle(queue, k);
                    if states[k] == State::Held && matches!(queue[k].1, Claim::Shared { .. }) {
                        signals.push(queue[k].0);
                    }
                }
            }
        }
    }

    /// Explores every departure order (any holder releases, or any waiter gives up)
    /// and checks each reachable state: exactly the entries the reference model
    /// grants believe they hold (no wrong grant, no missed grant).
    fn explore(queue: Vec<(usize, Claim)>, states: Vec<State>) {
        let claims: Vec<Claim> = queue.iter().map(|(_, c)| *c).collect();
        let reference = reference(&claims);
        for s in &states {
            if let State::Watching(set) = s {
                assert!(
                    set.iter().all(|id| queue.iter().any(|(i, _)| i == id)),
                    "watching a departed entry in {queue:?}: {states:?}"
                );
            }
        }
        let held: Vec<bool> = states.iter().map(|s| *s == State::Held).collect();
        assert_eq!(
            held, reference,
            "wrong or missed grant in {queue:?}: {states:?}"
        );
        for leave in 0..queue.len() {
            let gone = queue[leave].0;
            let mut q = queue.clone();
            let mut s = states.clone();
            q.remove(leave);
            s.remove(leave);
            wake(&q, &mut s, gone);
            explore(q, s);
        }
    }

    #[test]
    fn every_departure_order_grants_exactly_and_never_sticks() {
        for q in &queues(5) {
            let queue: Vec<(usize, Claim)> = q.iter().copied().enumerate().collect();
            let states = (0..queue.len()).map(|k| settle(&queue, k)).collect();
            explore(queue, states);
        }
    }

    #[test]
    fn a_semaphore_permit_freed_out_of_order_goes_to_the_first_waiter() {
        // A, B, C hold 3 permits; D watches all three, E watches D. B leaves first: D
        // is woken and granted, and its grant signal makes E watch A, C and D.
        let s = Claim::Shared { limit: 3 };
        let queue = vec![(0, s), (1, s), (2, s), (3, s), (4, s)];
        let mut states: Vec<State> = (0..5).map(|k| settle(&queue, k)).collect();
        assert_eq!(states[3], State::Watching(vec![0, 1, 2]));
        assert_eq!(states[4], State::Watching(vec![3]));
        let mut q = queue.clone();
        q.remove(1);
        states.remove(1);
        wake(&q, &mut states, 1);
        assert_eq!(states[2], State::Held);
        assert_eq!(states[3], State::Watching(vec![0, 2, 3]));
    }
}
