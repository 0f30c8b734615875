//! The Lua scripts of Redlock, run on each master on its own: the lock hash
//! `<base>lock`, the token counter `<base>t`, the recent waiters `<base>wq` and the
//! lease key (see the module's docs).

const ACQUIRE: &str = r"
local id, ttl, cttl, lease, holder, wait = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1'
local now = redis.call('TIME')
local micros = tonumber(now[1]) * 1000000 + tonumber(now[2])
local ms = math.floor(micros / 1000)
if redis.call('EXISTS', KEYS[4]) == 0 then return {-1, ''} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ms)
local have = redis.call('HGET', KEYS[1], 'i')
if have and have ~= id then
  if wait then
    redis.call('ZADD', KEYS[3], ms + tonumber(ttl), id)
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
  return {0, ''}
end
redis.call('ZREM', KEYS[3], id)
if have then return {1, redis.call('HGET', KEYS[1], 't')} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local tok = string.format('%.0f', math.max(last + 1, micros))
redis.call('SET', KEYS[2], tok, 'PX', cttl)
redis.call('HSET', KEYS[1], 'i', id, 't', tok, 'l', lease, 'a', string.format('%.0f', ms), 'h', holder)
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, tok}
";

/// Writes the quorum's token back: counter = max(counter, tok); the entry's token.
const COMMIT: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if redis.call('HGET', KEYS[2], 'i') == ARGV[3] then redis.call('HSET', KEYS[2], 't', ARGV[1]) end
return 1
";

const RELEASE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'i') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// KEYS[1] the lease key, then lock keys; ARGV[1] ttl, then the entry ids.
const RENEW: &str = r"
local missing = {}
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then table.insert(missing, 1) end
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'i') == ARGV[i] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  else
    table.insert(missing, i)
  end
end
return missing
";

const INSPECT: &str = r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local f = redis.call('HMGET', KEYS[1], 'i', 't', 'l', 'a', 'h')
local waiters = redis.call('ZCOUNT', KEYS[2], ms, '+inf')
return {f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '', waiters}
";

/// The scripts, loaded lazily by redis-rs on each master.
pub(super) struct Scripts {
    pub(super) acquire: redis::Script,
    pub(super) commit: redis::Script,
    pub(super) release: redis::Script,
    pub(super) renew: redis::Script,
    pub(super) inspect: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            acquire: redis::Script::new(ACQUIRE),
            commit: redis::Script::new(COMMIT),
            release: redis::Script::new(RELEASE),
            renew: redis::Script::new(RENEW),
            inspect: redis::Script::new(INSPECT),
        }
    }
}
