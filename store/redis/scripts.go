package redis

import goredis "github.com/redis/go-redis/v9"

// Lua scripts for everything that must be atomic. Each touches only keys of
// one hash tag, so it runs on Redis Cluster too. Payloads are stored in the
// stream field "p".

// scriptLogAppend appends ARGV[2..] to the partition stream KEYS[1] with
// approximate retention MAXLEN ~ ARGV[1], as one contiguous batch, and
// returns the ids.
var scriptLogAppend = goredis.NewScript(`
local ids = {}
for i = 2, #ARGV do
  ids[i - 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'p', ARGV[i])
end
return ids
`)

// scriptLogAppendMany is scriptLogAppend for many partitions at once,
// without Cluster: KEYS are the partitions' streams; ARGV is the MAXLEN,
// then per key the number of payloads and the payloads. It returns one
// element per key: the ids, or the error that stopped that partition (the
// payloads before it stay appended, as with scriptLogAppend). One script
// instead of one per partition means one wake-up of the consumers'
// XREADGROUP, which is blocked on all the partitions, per publish.
var scriptLogAppendMany = goredis.NewScript(`
local out, a = {}, 2
for k = 1, #KEYS do
  local n, ids = tonumber(ARGV[a]), {}
  a = a + 1
  for i = 1, n do
    local id = redis.pcall('XADD', KEYS[k], 'MAXLEN', '~', ARGV[1], '*', 'p', ARGV[a + i - 1])
    if type(id) == 'table' and id.err then
      ids = id
      break
    end
    ids[i] = id
  end
  a = a + n
  out[k] = ids
end
return out
`)

// luaCapOutbox defines the outbox writes of the scripts below. id_lt
// compares two stream ids.
// delete_through deletes the entries of outbox `out` up to and including
// `newest` (XTRIM MINID deletes those before it, XDEL that one) and records
// `newest` in `del` (see Outboxes.Lost). Deletions always take a prefix of
// the stream, so `del` only grows. cap_outbox deletes the oldest entries
// beyond `cap` exactly. append_items appends the items ARGV[a] (their
// count), then per item its partition, position and payload, to `out`,
// except those fenced off by the retirement hash `fence` (Outboxes.Retire),
// whose id is the empty string; it caps the outbox and returns the ids and the index of
// the next argument.
const luaCapOutbox = `
local function id_lt(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then
    return ams < bms
  end
  return tonumber(aseq) < tonumber(bseq)
end
local function delete_through(out, del, newest)
  redis.call('XTRIM', out, 'MINID', newest)
  redis.call('XDEL', out, newest)
  redis.call('SET', del, newest)
end
local function cap_outbox(out, del, cap)
  local excess = redis.call('XLEN', out) - cap
  if excess > 0 then
    local old = redis.call('XRANGE', out, '-', '+', 'COUNT', excess)
    delete_through(out, del, old[#old][1])
  end
end
local function fenced_by(fence)
  if redis.call('EXISTS', fence) == 0 then
    return function() return false end
  end
  local fences = {}
  return function(p, pos)
    if pos == '' then
      return false
    end
    if fences[p] == nil then
      fences[p] = redis.call('HGET', fence, p)
    end
    return fences[p] and id_lt(pos, fences[p])
  end
end
local function append_items(out, del, fence, cap, a)
  local n, ids, fenced = tonumber(ARGV[a]), {}, fenced_by(fence)
  for i = 1, n do
    local j = a + 3 * i - 2
    if fenced(ARGV[j], ARGV[j + 1]) then
      ids[i] = ''
    else
      ids[i] = redis.call('XADD', out, '*', 'p', ARGV[j + 2])
    end
  end
  cap_outbox(out, del, cap)
  return ids, a + 3 * n + 1
end
`

// scriptOutboxAppend appends the items ARGV[2..] (append_items: their
// count, then partition, position and payload each) to the outbox KEYS[1],
// caps it at ARGV[1] entries (outdel KEYS[2]), skipping the items its
// retirement KEYS[3] fences off, and returns the ids.
var scriptOutboxAppend = goredis.NewScript(luaCapOutbox + `
return (append_items(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), 2))
`)

// scriptOutboxRetire retires the outbox KEYS[1] (Outboxes.Retire): it
// generates an id past every issued one, deletes every entry up to it,
// records it as the greatest deleted id (KEYS[2]) and as the retirement
// (field r of KEYS[3]), moves the fences of KEYS[3] forward to ARGV's
// (partition, position) pairs, and returns the id.
var scriptOutboxRetire = goredis.NewScript(luaCapOutbox + `
local r = redis.call('XADD', KEYS[1], '*', 'p', '')
redis.call('XTRIM', KEYS[1], 'MINID', r)
redis.call('XDEL', KEYS[1], r)
redis.call('SET', KEYS[2], r)
redis.call('HSET', KEYS[3], 'r', r)
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[3], ARGV[i])
  if not cur or id_lt(cur, ARGV[i + 1]) then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
return r
`)

// scriptRoute is the write half of Router.RouteRead and MultiRouter.RouteReadMany
// without Cluster, where one script may touch many partitions' and
// gateways' keys. KEYS are the streams of the K partitions with ids to
// acknowledge, then each gateway's outbox and outdel; ARGV is the group,
// the outbox cap and K, then per partition the number of ids and the ids,
// then per gateway the number of payloads and the payloads. It appends and
// caps every outbox, then acknowledges: if anything fails, nothing is
// acknowledged.
var scriptRoute = goredis.NewScript(luaCapOutbox + `
local cap = tonumber(ARGV[2])
local nparts = tonumber(ARGV[3])
local acks = {}
local a = 4
for j = 1, nparts do
  local n = tonumber(ARGV[a])
  acks[j] = {a + 1, a + n}
  a = a + n + 1
end
for k = nparts + 1, #KEYS, 3 do
  local _
  _, a = append_items(KEYS[k], KEYS[k + 1], KEYS[k + 2], cap, a)
end
for j = 1, nparts do
  local first, last = acks[j][1], acks[j][2]
  for i = first, last, 1000 do
    redis.call('XACK', KEYS[j], ARGV[1], unpack(ARGV, i, math.min(i + 999, last)))
  end
end
return 1
`)

// scriptOutboxTrim deletes the entries of outbox KEYS[1] with id <= ARGV[1]
// and records the greatest of them in KEYS[2] (delete_through). It
// returns 1 if it deleted anything.
var scriptOutboxTrim = goredis.NewScript(luaCapOutbox + `
local upto = redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', 1)
if #upto == 0 then
  return 0
end
delete_through(KEYS[1], KEYS[2], upto[1][1])
return 1
`)

// scriptOutboxLast returns the last-generated-id of the outbox KEYS[1]
// (XINFO STREAM), or false when it does not exist.
var scriptOutboxLast = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    return info[i + 1]
  end
end
return false
`)

// scriptLeaseAcquire sets KEYS[1] to the owner ARGV[1] with PX ARGV[2] if it
// is free, or refreshes the ttl if ARGV[1] already holds it; 1 if ARGV[1]
// holds it afterwards, else 0.
var scriptLeaseAcquire = goredis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// scriptLeaseRenew sets the ttl of KEYS[1] to ARGV[2] ms if ARGV[1] holds
// it; 1 if renewed, else 0.
var scriptLeaseRenew = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// scriptLeaseRelease deletes KEYS[1] if ARGV[1] holds it.
var scriptLeaseRelease = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
`)

// scriptSessionClaim records ARGV[1] as the holder of the session KEYS[1]
// ("<epoch>:<node>") with a new epoch and returns it. The epoch is the
// server time in microseconds, or the previous epoch + 1 if that is not
// greater, so epochs keep increasing even if the key was deleted meanwhile.
var scriptSessionClaim = goredis.NewScript(`
local prev = 0
local cur = redis.call('GET', KEYS[1])
if cur then
  prev = tonumber(string.match(cur, '^(%d+):')) or 0
end
local now = redis.call('TIME')
local epoch = tonumber(now[1]) * 1000000 + tonumber(now[2])
if epoch <= prev then
  epoch = prev + 1
end
redis.call('SET', KEYS[1], string.format('%d:%s', epoch, ARGV[1]))
return epoch
`)

// scriptSessionRelease replaces the session KEYS[1] by "<epoch>:" (no
// holder, epoch kept) if it is exactly ARGV[1] ("<epoch>:<node>").
var scriptSessionRelease = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
end
return 0
`)

// allScripts are loaded by New so that pipelined EVALSHA calls find them.
var allScripts = []*goredis.Script{
	scriptLogAppend, scriptOutboxAppend, scriptOutboxRetire, scriptRoute, scriptOutboxTrim, scriptOutboxLast,
	scriptLeaseAcquire, scriptLeaseRenew, scriptLeaseRelease,
	scriptSessionClaim, scriptSessionRelease,
}
