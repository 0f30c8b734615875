//! What `inspect`, `list` and the lock watches report: a lock's [`LockInfo`] from
//! its contenders' key-values.

use crate::queue;
use lock_core::{
    backend::{decide, Claim, Decision},
    FencingToken, HolderInfo, LeaseId, LockInfo, LockName,
};

fn holder(range: &str, kv: &::etcd_client::KeyValue) -> HolderInfo {
    let (acquired_at, holder) = queue::decode_value(kv.value());
    HolderInfo::new(
        FencingToken::new(kv.create_revision().unsigned_abs()),
        LeaseId::new(kv.lease().unsigned_abs()),
    )
    .with_holder(holder)
    .with_acquired_at(acquired_at)
    .with_claim(queue::claim_of(range, kv.key()))
}

/// The lock's view from its contenders in create-revision order (the first `count`
/// of them read; the rest only counted): every entry [`decide`] grants is a holder.
pub(crate) fn info(
    name: LockName,
    range: &str,
    contenders: &[&::etcd_client::KeyValue],
    count: i64,
) -> Option<LockInfo> {
    let claims: Vec<Claim> = contenders
        .iter()
        .map(|kv| queue::claim_of(range, kv.key()))
        .collect();
    let held = (0..claims.len())
        .take_while(|i| decide(&claims, *i) == Some(Decision::Granted))
        .count();
    let mut holders = contenders[..held].iter().map(|kv| holder(range, kv));
    let first = holders.next()?;
    let others: Vec<HolderInfo> = holders.collect();
    let count = usize::try_from(count).unwrap_or(0);
    let waiters = count.saturating_sub(held);
    Some(LockInfo::from_holders(name, first, others, waiters))
}
