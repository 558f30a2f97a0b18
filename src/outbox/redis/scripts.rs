//! The Lua scripts that make each change of the Redis store atomic: a
//! job added under its key, a delivery acknowledged with its reply, a job
//! put back for later or moved to the dead letters, a lease extended, a
//! token taken from a host's shared rate.

use redis::{ConnectionLike, RedisResult, Script};

/// `enqueue`. KEYS: stream, id counter, the key's name. ARGV: maxlen
/// (0: none), the order key (empty: none), then the record's fields and
/// values. Returns `{id, 1}` for a new job, `{id, 0}` for a known key,
/// `{-1, 0}` when the stream is full. A counter that is not there (a new
/// stream, or a Redis that lost its data) starts at Redis's time in ms
/// times 1,000: past every id an earlier counter gave, unless it gave
/// more than 1,000 a millisecond over its whole life, so that no id is
/// given twice (`reply` of an old id never finds a new job's answer). Its
/// first write is the first of the script: at `maxmemory` nothing is
/// written.
///
/// A job with an order key joins its key's line, `<stream>:order:<key>`
/// (job ids, the first is the one in the stream): the first of its line
/// goes to the stream; a later one waits, parked under
/// `<stream>:park:<id>` (its fields) and counted in `<stream>:parked`,
/// until the job before it is over (see `RELEASE`). (These keys are
/// named here, not in KEYS: they share the stream's hash tag, so its
/// slot.)
const ENQUEUE: &str = r"
local known = redis.call('GET', KEYS[3])
if known then return {tonumber(known), 0} end
local maxlen = tonumber(ARGV[1])
if maxlen > 0 and redis.call('XLEN', KEYS[1]) + tonumber(redis.call('GET', KEYS[1] .. ':parked') or '0') >= maxlen then return {-1, 0} end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[2], string.format('%.0f', ms * 1000))
end
local id = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], id)
if ARGV[2] ~= '' then
  -- (In a key's name, `..` would write a large id as 1.7e+15.)
  local sid = string.format('%.0f', id)
  if redis.call('RPUSH', KEYS[1] .. ':order:' .. ARGV[2], sid) > 1 then
    redis.call('HSET', KEYS[1] .. ':park:' .. sid, 'job', sid, unpack(ARGV, 3))
    redis.call('INCR', KEYS[1] .. ':parked')
    return {id, 1}
  end
end
redis.call('XADD', KEYS[1], '*', 'job', id, unpack(ARGV, 3))
return {id, 1}
";

/// A job over (delivered, or dead): if it heads its order key's line
/// (stream `s`, order key `okey`, job id `job`), it leaves the line, and
/// the next job of the line goes to the stream. Nothing for a job
/// without one, or not at the head (a requeued dead letter).
const RELEASE: &str = r"
local function release(s, okey, job)
  if okey == '' then return end
  local line = s .. ':order:' .. okey
  if redis.call('LINDEX', line, 0) ~= job then return end
  redis.call('LPOP', line)
  local next = redis.call('LINDEX', line, 0)
  if not next then return end
  local park = s .. ':park:' .. next
  local f = redis.call('HGETALL', park)
  if #f > 0 then
    redis.call('XADD', s, '*', unpack(f))
    redis.call('DEL', park)
    redis.call('DECR', s .. ':parked')
  end
end
";

/// Deliveries answered, many in one call. KEYS: stream, the delivered
/// counter, then per job its reply hash and its key's name. ARGV: group,
/// retention in ms (-1: forever, 0: forget at once), then per job its
/// entry, its key, keep the reply (`1`/`0`), status, body, cut (`1`: the
/// body was too large to keep), its order key (empty: none), its job id.
/// An entry no longer pending (another consumer answered it) is skipped.
/// The acknowledged entries are deleted in one `XDEL`, and (retention 0)
/// their keys in one `DEL`: one call per job fewer, or two. Returns how
/// many were acknowledged.
const DONE: &str = r"
local keep = tonumber(ARGV[2])
local n = 0
local jobs = (#KEYS - 2) / 2
local acked, gone = {}, {}
for j = 0, jobs - 1 do
  local a = 3 + j * 8
  local reply, key = KEYS[3 + j * 2], KEYS[4 + j * 2]
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[a]) == 1 then
    n = n + 1
    acked[n] = ARGV[a]
    release(KEYS[1], ARGV[a + 6], ARGV[a + 7])
    if keep == 0 then
      gone[#gone + 1] = key
    else
      if ARGV[a + 2] == '1' then
        redis.call('HSET', reply, 'key', ARGV[a + 1], 'status', ARGV[a + 3], 'body', ARGV[a + 4])
        if ARGV[a + 5] == '1' then redis.call('HSET', reply, 'cut', '1') end
      else
        redis.call('HSET', reply, 'key', ARGV[a + 1])
      end
      if keep > 0 then
        redis.call('PEXPIRE', reply, keep)
        redis.call('PEXPIRE', key, keep)
      end
    end
  end
end
if n > 0 then
  redis.call('XDEL', KEYS[1], unpack(acked))
  redis.call('INCRBY', KEYS[2], n)
end
if #gone > 0 then redis.call('DEL', unpack(gone)) end
return n
";

/// A delivery that moves the job on: acknowledged and added again to
/// KEYS[2] (the stream itself for a later try, the dead letters when
/// given up). KEYS: stream, target. ARGV: group, entry, the order key to
/// release (empty: none; a dead job's), its job id, then the fields and
/// values to add. Returns 0 if the entry was no longer pending.
const MOVE: &str = r"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
release(KEYS[1], ARGV[3], ARGV[4])
return 1
";

/// A dead letter back in the stream. KEYS: the dead letters, the
/// stream. ARGV: the dead letter's entry, then the fields and values to
/// add. Returns 0 if it was no longer there.
const REQUEUE: &str = r"
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
return 1
";

/// A consumer's lease kept: each entry of ARGV[3..] that is still this
/// consumer's (ARGV[2]) in group ARGV[1] gets its idle time reset. KEYS:
/// stream. Returns how many.
const EXTEND: &str = r"
local mine = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then mine[#mine + 1] = ARGV[i] end
end
for i = 1, #mine, 500 do
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for j = i, math.min(i + 499, #mine) do args[#args + 1] = mine[j] end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return #mine
";

/// One token of a host's rate, shared by every consumer: GCRA with a
/// tolerance of one interval, so that a consumer that wakes a little late
/// does not lose its turn, and any window of the period holds at most
/// `n + 2`. KEYS: the host's theoretical arrival time, its pause (set on
/// a 429 or a `Retry-After`), its slow-down (set on a 429: the interval
/// doubles while it lasts). ARGV: the interval in µs. Returns `{1, 0}`
/// for a token, `{0, µs to wait}` otherwise. Time is Redis's, the same
/// for every machine.
const TAKE: &str = r"
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return {0, pause * 1000} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then interval = interval * 2 end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > interval then return {0, tat - now - interval} end
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.ceil(interval / 500) + 1000)
return {1, 0}
";

/// Before a take-over: each entry idle past the lease (ARGV[2] ms, at
/// most ARGV[3] of them) that its consumer was delivering alone when it
/// stopped (its `<stream>:alone:<consumer>` names it; ARGV[4] is the
/// stream's name) gets one proven stop in KEYS[2] (a hash by entry).
/// KEYS: stream, the proven stops. ARGV[1]: group. Returns how many.
const PROVE: &str = r"
local rows = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', tonumber(ARGV[2]), '-', '+', tonumber(ARGV[3]))
local n = 0
for _, r in ipairs(rows) do
  local alone = ARGV[4] .. ':alone:' .. r[2]
  if redis.call('GET', alone) == r[1] then
    redis.call('HINCRBY', KEYS[2], r[1], 1)
    redis.call('DEL', alone)
    n = n + 1
  end
end
return n
";

/// A job put off: its next time (now on Redis's clock plus ARGV[2] ms)
/// and its counts (ARGV[3] attempts, ARGV[4] tries) kept under its entry
/// (ARGV[1]) in the hash KEYS[1], as `due attempts tries`. Returns the
/// time.
const LATER: &str = r"
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f %s %s', due, ARGV[3], ARGV[4]))
return due
";

/// The scripts, loaded on every new connection and run by hash.
pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) done: Script,
    pub(super) moved: Script,
    pub(super) requeue: Script,
    pub(super) extend: Script,
    pub(super) take: Script,
    pub(super) prove: Script,
    pub(super) later: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            enqueue: Script::new(ENQUEUE),
            done: Script::new(&format!("{RELEASE}{DONE}")),
            moved: Script::new(&format!("{RELEASE}{MOVE}")),
            requeue: Script::new(REQUEUE),
            extend: Script::new(EXTEND),
            take: Script::new(TAKE),
            prove: Script::new(PROVE),
            later: Script::new(LATER),
        }
    }

    /// Loads every script, so that pipelines can run them by hash.
    pub(super) fn load(&self, conn: &mut dyn ConnectionLike) -> RedisResult<()> {
        for s in [
            &self.enqueue,
            &self.done,
            &self.moved,
            &self.requeue,
            &self.extend,
            &self.take,
            &self.prove,
            &self.later,
        ] {
            s.prepare_invoke().load(conn)?;
        }
        Ok(())
    }
}
