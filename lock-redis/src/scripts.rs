//! The Lua scripts and the key names they work on: every change to a lock's keys is
//! one of these, atomic on the server. Keys of lock `N` (all in one hash slot, `{N}`), with `B = <prefix>{N}:`:
//!
//! - `Bq`: the queue, a sorted set of entry ids scored by their token;
//! - `Bt`: the token counter (a string, with a long TTL);
//! - `Be:<id>`: one entry (a hash: `t` token, `l` lease, `a` acquired at (unix ms,
//!   server time), `h` holder), with the lease's TTL, renewed by the lease;
//! - `Bw:<id>`: the wake list of a waiting entry: the release that makes it the
//!   head pushes one element, which the waiter's `BLPOP` takes.
//!
//! Redlock (`redlock/scripts.rs`) uses the same key base, with its own keys under it.

use lock_core::{FencingToken, HolderInfo, LeaseId, LockName};
use std::time::Duration;

/// How long the token counter of a lock outlives its last acquisition.
pub(crate) const COUNTER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The key base of lock `name`: every key of the lock starts with it and shares its
/// hash slot.
pub(crate) fn base(prefix: &str, name: &LockName) -> String {
    format!("{prefix}{{{name}}}:")
}

/// The holder an entry hash describes, from the fields the inspect scripts answer:
/// the token, the lease (`l`, hex), the acquisition time (`a`, unix ms, server time)
/// and the holder's description (`h`, empty: none). An unreadable lease or time
/// reads as 0 or none.
pub(crate) fn holder_info(token: u64, lease: &str, acquired_ms: &str, holder: &str) -> HolderInfo {
    let lease = LeaseId::new(u64::from_str_radix(lease, 16).unwrap_or(0));
    let acquired_at = acquired_ms
        .parse::<u64>()
        .ok()
        .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms));
    HolderInfo::new(FencingToken::new(token), lease)
        .with_holder((!holder.is_empty()).then(|| holder.to_owned()))
        .with_acquired_at(acquired_at)
}

/// Helpers every lock script starts with. `ARGV[1]` is the key base `B`.
const COMMON: &str = r"
local base = ARGV[1]
local q = base .. 'q'
local function entry(id) return base .. 'e:' .. id end
local function wake(id) return base .. 'w:' .. id end
-- Drops dead entries (expired or deleted) at the head; the live head's id or nil.
local function live_head()
  while true do
    local head = redis.call('ZRANGE', q, 0, 0)[1]
    if not head then return nil end
    if redis.call('EXISTS', entry(head)) == 1 then return head end
    redis.call('ZREM', q, head)
  end
end
-- Where entry id stands: {1} granted; {2, pttl}: waits for the entry just ahead,
-- which expires in pttl ms unless renewed; {0}: the entry is gone (lost).
local function position(id)
  if redis.call('EXISTS', entry(id)) == 0 then
    redis.call('ZREM', q, id)
    return {0, 0}
  end
  while true do
    local rank = redis.call('ZRANK', q, id)
    if not rank then return {0, 0} end
    if rank == 0 then
      redis.call('DEL', wake(id))
      return {1, 0}
    end
    local ahead = redis.call('ZRANGE', q, rank - 1, rank - 1)[1]
    local pttl = redis.call('PTTL', entry(ahead))
    if pttl == -2 then redis.call('ZREM', q, ahead) else return {2, pttl} end
  end
end
";

/// Enqueues entry `ARGV[2]` (idempotent: a retry finds the entry it made) and says
/// where it stands. `KEYS[1]` the counter; ARGV: base, id, ttl ms, lease hex, holder,
/// nowait (`1`/`0`), counter TTL ms. Returns `{code, token, pttl}`: code 1 granted,
/// 2 waiting, 3 busy (nowait; nothing left behind), 0 lost.
///
/// The token is `max(counter + 1, server time in µs)`: strictly increasing while the
/// counter lives, and above every earlier token after the counter is lost as long as
/// the server clock did not step back (see the crate's `# Non-guarantees`). The
/// counter is written with `SET … GET` (Redis ≥ 6.2), a second `SET` only when the
/// clock is not ahead of it.
///
/// Uncontended path: a new entry on an empty queue is granted at once (nothing can
/// be ahead of it, and its id cannot be in the queue yet): 7 server calls instead of
/// the position walk's 11.
const ENQUEUE: &str = r"
local id, ttl, lease, holder, nowait, cttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1', ARGV[7]
local e = entry(id)
local tok = redis.call('HGET', e, 't')
if not tok then
  -- An empty queue holds neither this id (not lost) nor anyone ahead: granted
  -- without the position walk.
  local head = redis.call('ZRANGE', q, 0, 0)[1]
  if head then
    if redis.call('ZSCORE', q, id) then
      redis.call('ZREM', q, id)
      return {0, '', 0}
    end
    if nowait and live_head() then return {3, '', 0} end
  end
  local now = redis.call('TIME')
  local micros = tonumber(now[1]) * 1000000 + tonumber(now[2])
  -- One SET … GET when the clock is ahead of the counter (the usual case); a second
  -- SET when it is not.
  tok = string.format('%.0f', micros)
  local last = tonumber(redis.call('SET', KEYS[1], tok, 'PX', cttl, 'GET') or '0') or 0
  if last + 1 > micros then
    tok = string.format('%.0f', last + 1)
    redis.call('SET', KEYS[1], tok, 'PX', cttl)
  end
  redis.call('ZADD', q, tok, id)
  redis.call('HSET', e, 't', tok, 'l', lease, 'a', string.format('%.0f', math.floor(micros / 1000)), 'h', holder)
  redis.call('PEXPIRE', e, ttl)
  if not head then return {1, tok, 0} end
end
local p = position(id)
if p[1] == 2 and nowait then
  redis.call('DEL', e)
  redis.call('ZREM', q, id)
  return {3, '', 0}
end
return {p[1], tok, p[2]}
";

/// Re-reads where entry `ARGV[2]` stands (after a wake-up or a re-check timeout);
/// lost when the lease key `ARGV[3]` is gone. Returns `{code, '', pttl}` as [`ENQUEUE`].
const CHECK: &str = r"
if redis.call('EXISTS', ARGV[3]) == 0 then return {0, '', 0} end
local p = position(ARGV[2])
return {p[1], '', p[2]}
";

/// Deletes entry `ARGV[2]` if its token is `ARGV[3]` (`''`: whatever it is, for a
/// cancelled acquisition whose token is unknown), removes it from the queue and, when
/// that changes the live head, pushes one wake-up to the new head only. Returns 1
/// when the entry was deleted, 0 when it was already gone, -1 when it holds another
/// token (left alone).
///
/// Uncontended path: a live entry at the head needs no pruning walk to know it is the
/// live head, and with no one behind it there is nobody to wake: 5 server calls
/// instead of 7.
const RELEASE: &str = r"
local id, tok = ARGV[2], ARGV[3]
local e = entry(id)
local have = redis.call('HGET', e, 't')
if have and tok ~= '' and have ~= tok then return -1 end
-- A live head is the live head: no pruning walk; with no one behind it, the queue
-- is empty afterwards and there is nobody to wake.
local first = redis.call('ZRANGE', q, 0, 1)
local head_is_id = have and first[1] == id
local before = id
if not head_is_id then before = live_head() end
local deleted = redis.call('DEL', e)
redis.call('ZREM', q, id)
redis.call('DEL', wake(id))
if head_is_id and not first[2] then return deleted end
local after = live_head()
if after and after ~= before then
  local w = wake(after)
  redis.call('RPUSH', w, '1')
  local pttl = redis.call('PTTL', entry(after))
  if pttl < 1000 then pttl = 1000 end
  redis.call('PEXPIRE', w, pttl)
end
return deleted
";

/// Renews the lease key `KEYS[1]` and every entry in the other KEYS to `ARGV[1]`
/// ms; returns the 1-based indexes of the keys that are gone (1: the lease itself).
const RENEW: &str = r"
local missing = {}
for i, k in ipairs(KEYS) do
  if redis.call('PEXPIRE', k, ARGV[1]) == 0 then table.insert(missing, i) end
end
return missing
";

/// Reads lock `ARGV[1]`'s live entries in queue order (read only):
/// `{id, token, lease, acquired ms, holder, …}` for each.
const INSPECT: &str = r"
local base = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('ZRANGE', base .. 'q', 0, -1)) do
  local f = redis.call('HMGET', base .. 'e:' .. id, 't', 'l', 'a', 'h')
  if f[1] then
    table.insert(out, id)
    for i = 1, 4 do table.insert(out, f[i] or '') end
  end
end
return out
";

/// The scripts, loaded lazily by redis-rs (`EVALSHA`, then `SCRIPT LOAD` on
/// `NOSCRIPT`, which is safe to retry: the script did not run).
pub(crate) struct Scripts {
    pub(crate) enqueue: redis::Script,
    pub(crate) check: redis::Script,
    pub(crate) release: redis::Script,
    pub(crate) renew: redis::Script,
    pub(crate) inspect: redis::Script,
    /// The connect-time check of the user's rights (see `rights`).
    pub(crate) probe: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_common = |body: &str| redis::Script::new(&format!("{COMMON}{body}"));
        Scripts {
            enqueue: with_common(ENQUEUE),
            check: with_common(CHECK),
            release: with_common(RELEASE),
            renew: redis::Script::new(RENEW),
            inspect: redis::Script::new(INSPECT),
            probe: crate::rights::probe_script(),
        }
    }
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripts").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_info_reads_the_entry_fields() {
        let h = holder_info(7, "00000000000000ff", "1700000000123", "worker-1");
        assert_eq!(h.token, FencingToken::new(7));
        assert_eq!(h.lease, LeaseId::new(255));
        assert_eq!(
            h.acquired_at,
            Some(std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(h.holder.as_deref(), Some("worker-1"));
        let h = holder_info(1, "not hex", "", "");
        assert_eq!(h.lease, LeaseId::new(0));
        assert_eq!(h.acquired_at, None);
        assert_eq!(h.holder, None);
    }
}
