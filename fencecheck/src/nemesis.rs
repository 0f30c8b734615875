//! The nemesis: fault types, the seeded schedule and the fault log. Executing a fault
//! is backend-specific and lives in the runners (`run::memory`, `run::procs`).

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, str::FromStr};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the holder in its critical section (memory: expire its lease and abort it).
    Kill,
    /// SIGSTOP the holder for 2 x TTL, then SIGCONT (memory: stall its lease and freeze it).
    Pause,
    /// Blackhole the holder's connections for 2 x TTL (memory: stall its keep-alive).
    Partition,
    /// Blackhole for a third of the TTL: must cause no loss.
    PartitionShort,
    /// Reset every connection of the holder once.
    Reset,
    /// Add latency to every chunk the holder sends or receives, for 2 x TTL.
    Latency,
    /// Kill the etcd or ZooKeeper leader, restart it with its data.
    LeaderKill,
    /// SIGSTOP the etcd leader for a TTL, then SIGCONT.
    LeaderPause,
    /// Kill a ZooKeeper follower, restart it.
    FollowerKill,
    /// An operator revokes the holder's etcd lease.
    Revoke,
    /// An operator deletes the holder's lock key or node (memory: `delete_holder`).
    Delete,
    /// The holder's ZooKeeper session is expired from a second connection.
    Expire,
    /// SIGSTOP a follower for 2 x TTL, then SIGCONT: a quorum stays.
    FollowerPause,
    /// Cut a follower off from the other members and from every client for
    /// 2 x TTL (network namespaces): a quorum stays.
    FollowerIsolate,
    /// Cut the leader off from the other members for 2 x TTL while its clients
    /// still reach it: the majority elects a new leader within the election
    /// timeout, well inside the TTL.
    LeaderPartition,
    /// Flap a follower's links (0.4 s down, 0.4 s up) for 2 x TTL: a quorum stays.
    /// (A flapping *leader* can cost one election after another, each up to twice
    /// the election timeout, so it does not keep a quorum within the TTL; the
    /// leader faults are leader-partition, leader-pause and leader-kill.)
    LinkFlap,
    /// Every holder's link to one member gets 250 ms per chunk (a round trip of
    /// 0.5 s or more) for 2 x TTL: a quorum stays.
    SlowLink,
    /// Kill every member, start them all again with their data.
    ClusterRestart,
    /// Redis master/replica failover (`redis`; `redlock`: the first master):
    /// promote the replica (`REPLICAOF NO ONE`), let
    /// the clients go on with the old master for 1.5 x TTL (the promoted replica
    /// misses every write of that time, and the entries it has expire), then switch
    /// every client's proxy to it, kill the old master and bring it back empty as
    /// the new replica. Locks granted by the old master are lost; their holders may
    /// believe they hold until their next renewal (lock-redis's documented
    /// non-guarantee): the overlap is reported apart, the fence must still reject
    /// every stale access.
    Failover,
}

impl FaultKind {
    /// Every kind, in display order.
    pub const ALL: [FaultKind; 19] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::PartitionShort,
        FaultKind::Reset,
        FaultKind::Latency,
        FaultKind::LeaderKill,
        FaultKind::LeaderPause,
        FaultKind::FollowerKill,
        FaultKind::Revoke,
        FaultKind::Delete,
        FaultKind::Expire,
        FaultKind::FollowerPause,
        FaultKind::FollowerIsolate,
        FaultKind::LeaderPartition,
        FaultKind::LinkFlap,
        FaultKind::SlowLink,
        FaultKind::ClusterRestart,
        FaultKind::Failover,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::PartitionShort => "partition-short",
            FaultKind::Reset => "reset",
            FaultKind::Latency => "latency",
            FaultKind::LeaderKill => "leader-kill",
            FaultKind::LeaderPause => "leader-pause",
            FaultKind::FollowerKill => "follower-kill",
            FaultKind::Revoke => "revoke",
            FaultKind::Delete => "delete",
            FaultKind::Expire => "expire",
            FaultKind::FollowerPause => "follower-pause",
            FaultKind::FollowerIsolate => "follower-isolate",
            FaultKind::LeaderPartition => "leader-partition",
            FaultKind::LinkFlap => "link-flap",
            FaultKind::SlowLink => "slow-link",
            FaultKind::ClusterRestart => "cluster-restart",
            FaultKind::Failover => "failover",
        }
    }

    /// A server-side revocation forced on a live holder: the overlap until it learns is
    /// unavoidable and reported apart.
    pub fn is_forced_revocation(self) -> bool {
        matches!(
            self,
            FaultKind::Revoke | FaultKind::Delete | FaultKind::Expire
        )
    }

    /// Hits one holder (as opposed to the servers, which every holder shares).
    pub fn is_targeted(self) -> bool {
        !self.hits_members()
    }

    /// Hits server members (as opposed to one holder).
    pub fn hits_members(self) -> bool {
        matches!(
            self,
            FaultKind::LeaderKill
                | FaultKind::LeaderPause
                | FaultKind::FollowerKill
                | FaultKind::FollowerPause
                | FaultKind::FollowerIsolate
                | FaultKind::LeaderPartition
                | FaultKind::LinkFlap
                | FaultKind::SlowLink
                | FaultKind::ClusterRestart
                | FaultKind::Failover
        )
    }

    /// Leaves a quorum reachable within the TTL, so it may cost nobody their lock:
    /// a loss during it is a spurious loss (L3), which fails the run.
    pub fn keeps_quorum(self) -> bool {
        matches!(
            self,
            FaultKind::FollowerPause
                | FaultKind::FollowerIsolate
                | FaultKind::LeaderPartition
                | FaultKind::LinkFlap
                | FaultKind::SlowLink
        )
    }

    /// Takes the victim's lock away (so another holder should take over).
    pub fn takes_lock(self) -> bool {
        matches!(
            self,
            FaultKind::Kill
                | FaultKind::Pause
                | FaultKind::Partition
                | FaultKind::Revoke
                | FaultKind::Delete
                | FaultKind::Expire
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown fault {s:?}; known: {}", names.join(", "))
            })
    }
}

/// Whether `backend` grants from a FIFO queue (every backend but Redlock, whose
/// waiters poll).
pub fn queued(backend: &str) -> bool {
    backend != "redlock"
}

/// Which faults each backend configuration supports.
pub fn supported(backend: &str) -> Vec<FaultKind> {
    use FaultKind::*;
    match backend {
        "memory" => vec![Kill, Pause, Partition, PartitionShort, Delete],
        "etcd" => vec![
            Kill,
            Pause,
            Partition,
            PartitionShort,
            Reset,
            Latency,
            Revoke,
            Delete,
        ],
        "etcd3" => vec![
            Kill,
            Pause,
            Partition,
            LeaderKill,
            LeaderPause,
            Revoke,
            Delete,
        ],
        "zk" => vec![
            Kill,
            Pause,
            Partition,
            PartitionShort,
            Reset,
            Latency,
            Delete,
            Expire,
        ],
        "zk3" => vec![
            Kill,
            Pause,
            Partition,
            LeaderKill,
            FollowerKill,
            Delete,
            Expire,
        ],
        // One Redis server without persistence: holder faults, operator deletes, the
        // server paused for a TTL, and the server killed and restarted empty (every
        // entry lost: the fence must reject the old holder); with `failover`, a
        // replica that the master is failed over to (locks granted by the old
        // master lost, their holders believing until their next renewal). Three independent
        // masters: the holder faults, and with `failover` the first master failed over
        // to its replica (a lock held on all three keeps a majority). A master
        // restarted empty at once breaks Redlock's exclusion (it needs a delayed
        // restart; the checker's S2 sees the second grant), so that fault is not in
        // its list.
        "redis" => vec![
            Kill,
            Pause,
            Partition,
            PartitionShort,
            Delete,
            LeaderKill,
            LeaderPause,
            Failover,
        ],
        "redlock" => vec![Kill, Pause, Partition, Delete, Failover],
        // Members in network namespaces: the faults of one member of a healthy
        // cluster, a stalled leader, a whole-cluster restart, and a holder paused
        // past its TTL (so the unfenced control has a stale holder to lose updates to).
        "etcd3-net" | "zk3-net" => vec![
            Pause,
            LeaderPause,
            FollowerPause,
            FollowerIsolate,
            LeaderPartition,
            LinkFlap,
            SlowLink,
            ClusterRestart,
        ],
        _ => Vec::new(),
    }
}

/// A fault as injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// What.
    pub kind: FaultKind,
    /// Start (mono ns).
    pub t: u64,
    /// End: healed, resumed, restarted (mono ns).
    pub end: u64,
    /// The holder incarnation it hit, for targeted faults.
    pub target: Option<u32>,
    /// The token of the grant it revoked, for forced revocations.
    pub token: Option<u64>,
    /// Free text (member index, latency, errors).
    pub detail: String,
}

/// The seeded fault schedule: rounds of every requested kind, shuffled per round.
#[derive(Debug)]
pub struct Schedule {
    rng: StdRng,
    kinds: Vec<FaultKind>,
    pending: Vec<FaultKind>,
    done: BTreeMap<FaultKind, u32>,
}

impl Schedule {
    /// A schedule over `kinds` seeded with `seed`.
    pub fn new(seed: u64, kinds: Vec<FaultKind>) -> Self {
        Schedule {
            rng: StdRng::seed_from_u64(seed),
            kinds,
            pending: Vec::new(),
            done: BTreeMap::new(),
        }
    }

    /// The next fault; `None` when no kinds were requested.
    pub fn next_fault(&mut self) -> Option<FaultKind> {
        if self.kinds.is_empty() {
            return None;
        }
        if self.pending.is_empty() {
            self.pending = self.kinds.clone();
            self.pending.shuffle(&mut self.rng);
        }
        let kind = self.pending.pop()?;
        *self.done.entry(kind).or_default() += 1;
        Some(kind)
    }

    /// The fewest times any requested kind was scheduled so far.
    pub fn min_count(&self) -> u32 {
        self.kinds
            .iter()
            .map(|k| self.done.get(k).copied().unwrap_or(0))
            .min()
            .unwrap_or(u32::MAX)
    }

    /// The shared random source (victim choice, jitter).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_seeded_and_covers_every_kind_per_round() {
        let kinds = supported("etcd3");
        let mut a = Schedule::new(7, kinds.clone());
        let mut b = Schedule::new(7, kinds.clone());
        let sa: Vec<_> = (0..kinds.len() * 3)
            .filter_map(|_| a.next_fault())
            .collect();
        let sb: Vec<_> = (0..kinds.len() * 3)
            .filter_map(|_| b.next_fault())
            .collect();
        assert_eq!(sa, sb);
        assert_eq!(a.min_count(), 3);
        assert_eq!(
            "leader-kill".parse::<FaultKind>(),
            Ok(FaultKind::LeaderKill)
        );
        assert!("bogus".parse::<FaultKind>().is_err());
    }
}
