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

// luaCapOutbox defines the outbox writes of the scripts below. An outbox o
// is four keys (outboxKeys): o.out, the stream of entries; o.del, the
// greatest deleted id (see Outboxes.Lost); o.meta, a hash with the
// retirement (field r), the partitions' fences (fields "N") and the bytes
// of payload held (field b); and o.sz, a stream with the same ids as o.out
// holding each entry's payload size (field n), which tells the bytes that
// deleting a prefix frees without reading the payloads.
//   - id_lt compares two stream ids.
//   - delete_through deletes the entries up to and including `newest`
//     (XTRIM MINID deletes those before it, XDEL that one) and records
//     `newest` in o.del. Deletions always take a prefix of the stream, so
//     o.del only grows.
//   - cap_outbox deletes the oldest entries beyond `cap`, then, while the
//     payloads held exceed `maxbytes` (0: no byte cap), the oldest others
//     but `keep`, the newest (a batch larger than the cap alone still goes).
//   - mark_lost appends a loss marker (an empty payload, see verify.go) and
//     returns its id.
//   - append_items appends the items ARGV[a] (their count), then per item
//     its partition, position and payload, except those fenced off by the
//     retirement (Outboxes.Retire), whose id is the empty string; it caps
//     the outbox and returns the ids and the index of the next argument.
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
local function outbox(k)
  return {out = KEYS[k], del = KEYS[k + 1], meta = KEYS[k + 2], sz = KEYS[k + 3]}
end
local function delete_through(o, newest)
  local freed = 0
  for _, e in ipairs(redis.call('XRANGE', o.sz, '-', newest)) do
    freed = freed + tonumber(e[2][2])
  end
  if freed > 0 then
    redis.call('HINCRBY', o.meta, 'b', -freed)
  end
  redis.call('XTRIM', o.out, 'MINID', newest)
  redis.call('XDEL', o.out, newest)
  redis.call('XTRIM', o.sz, 'MINID', newest)
  redis.call('XDEL', o.sz, newest)
  redis.call('SET', o.del, newest)
end
local function cap_outbox(o, cap, maxbytes, keep)
  local excess = redis.call('XLEN', o.out) - cap
  if excess > 0 then
    local old = redis.call('XRANGE', o.out, '-', '+', 'COUNT', excess)
    delete_through(o, old[#old][1])
  end
  if maxbytes <= 0 then
    return
  end
  local over = tonumber(redis.call('HGET', o.meta, 'b') or '0') - maxbytes
  local from, last = '-', nil
  while over > 0 do
    local batch = redis.call('XRANGE', o.sz, from, '+', 'COUNT', 100)
    if #batch == 0 then
      break
    end
    for _, e in ipairs(batch) do
      if e[1] == keep then
        over = 0
        break
      end
      over, last = over - tonumber(e[2][2]), e[1]
      if over <= 0 then
        break
      end
    end
    from = '(' .. batch[#batch][1]
  end
  if last then
    delete_through(o, last)
  end
end
local function mark_lost(o)
  local m = redis.call('XADD', o.out, '*', 'p', '')
  redis.call('XADD', o.sz, m, 'n', 0)
  return m
end
local function fenced_by(meta)
  if redis.call('HEXISTS', meta, 'r') == 0 then
    return function() return false end
  end
  local fences = {}
  return function(p, pos)
    if pos == '' then
      return false
    end
    if fences[p] == nil then
      fences[p] = redis.call('HGET', meta, p)
    end
    return fences[p] and id_lt(pos, fences[p])
  end
end
local function append_items(o, cap, maxbytes, a)
  local n, ids, fenced, added, last = tonumber(ARGV[a]), {}, fenced_by(o.meta), 0, nil
  for i = 1, n do
    local j = a + 3 * i - 2
    if fenced(ARGV[j], ARGV[j + 1]) then
      ids[i] = ''
    else
      local size = string.len(ARGV[j + 2])
      last = redis.call('XADD', o.out, '*', 'p', ARGV[j + 2])
      redis.call('XADD', o.sz, last, 'n', size)
      ids[i], added = last, added + size
    end
  end
  if added > 0 then
    redis.call('HINCRBY', o.meta, 'b', added)
  end
  cap_outbox(o, cap, maxbytes, last)
  return ids, a + 3 * n + 1
end
`

// scriptOutboxAppend appends the items ARGV[3..] (append_items: their
// count, then partition, position and payload each) to the outbox KEYS[1..4]
// (outboxKeys), skipping the items its retirement fences off, caps it at
// ARGV[1] entries and ARGV[2] bytes, and returns the ids.
var scriptOutboxAppend = goredis.NewScript(luaCapOutbox + `
return (append_items(outbox(1), tonumber(ARGV[1]), tonumber(ARGV[2]), 3))
`)

// scriptOutboxRetire retires the outbox KEYS[1..4] (Outboxes.Retire): it
// generates an id past every issued one, deletes every entry up to it,
// records it as the greatest deleted id and as the retirement (field r of
// the meta hash), moves the fences forward to ARGV's (partition, position)
// pairs, and returns the id.
var scriptOutboxRetire = goredis.NewScript(luaCapOutbox + `
local o = outbox(1)
local r = redis.call('XADD', o.out, '*', 'p', '')
redis.call('XTRIM', o.out, 'MINID', r)
redis.call('XDEL', o.out, r)
redis.call('DEL', o.sz)
redis.call('SET', o.del, r)
redis.call('HSET', o.meta, 'r', r, 'b', 0)
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', o.meta, ARGV[i])
  if not cur or id_lt(cur, ARGV[i + 1]) then
    redis.call('HSET', o.meta, ARGV[i], ARGV[i + 1])
  end
end
return r
`)

// scriptOutboxMarkLost appends a loss marker to the outbox KEYS[1..4]: an
// entry with an empty payload, which the gateway's session turns into a
// Resync (writes a failover lost, see verify.go). It returns its id.
var scriptOutboxMarkLost = goredis.NewScript(luaCapOutbox + `
return mark_lost(outbox(1))
`)

// scriptVerifyOutbox returns 1 if the entry ARGV[1] of the outbox
// KEYS[1..4] is there or was deleted on purpose (acknowledged, capped,
// retired: at most the greatest deleted id); otherwise a failover lost it,
// and it appends a loss marker (scriptOutboxMarkLost) and returns its id.
var scriptVerifyOutbox = goredis.NewScript(luaCapOutbox + `
local o = outbox(1)
if #redis.call('XRANGE', o.out, ARGV[1], ARGV[1]) > 0 then
  return 1
end
local del = redis.call('GET', o.del)
if del and not id_lt(del, ARGV[1]) then
  return 1
end
return mark_lost(o)
`)

// scriptVerifyLog returns 1 if the entry ARGV[1] of the partition stream
// KEYS[1] is there or was trimmed (older than the first entry), 0 if a
// failover lost it.
var scriptVerifyLog = goredis.NewScript(luaCapOutbox + `
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) > 0 then
  return 1
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 and id_lt(ARGV[1], first[1][1]) then
  return 1
end
return 0
`)

// scriptRoute is the write half of Router.RouteRead and MultiRouter.RouteReadMany
// without Cluster, where one script may touch many partitions' and
// gateways' keys. KEYS are the streams of the K partitions with ids to
// acknowledge, then each gateway's four outbox keys (outboxKeys); ARGV is
// the group, the outbox caps in entries and bytes, and K, then per
// partition the number of ids and the ids, then per gateway its items as
// append_items reads them. It appends and caps every outbox, then
// acknowledges: if anything fails, nothing is acknowledged.
var scriptRoute = goredis.NewScript(luaCapOutbox + `
local cap, maxbytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local nparts = tonumber(ARGV[4])
local acks = {}
local a = 5
for j = 1, nparts do
  local n = tonumber(ARGV[a])
  acks[j] = {a + 1, a + n}
  a = a + n + 1
end
for k = nparts + 1, #KEYS, 4 do
  local _
  _, a = append_items(outbox(k), cap, maxbytes, a)
end
for j = 1, nparts do
  local first, last = acks[j][1], acks[j][2]
  for i = first, last, 1000 do
    redis.call('XACK', KEYS[j], ARGV[1], unpack(ARGV, i, math.min(i + 999, last)))
  end
end
return 1
`)

// scriptSubsPut stores subscription ARGV[1] with data ARGV[2] in the hash
// KEYS[1], records its tenant ARGV[4] in KEYS[3], and puts its id in the
// partition set KEYS[ARGV[3]] (KEYS[4..] are the sets of every partition),
// removing it from the others. KEYS[2] marks the gateway as indexed, which
// it is when its hash was empty or already marked: a gateway stored by an
// older version, without sets, stays unmarked and is read whole
// (Subscriptions.ListPartition). It returns "t:" and the tenant the
// subscription had, or nil for a new one: KEYS[3]'s entries are what the
// tenant counts count.
var scriptSubsPut = goredis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], 1)
end
local prev = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
local p = tonumber(ARGV[3])
for k = 4, #KEYS do
  if k == p then
    redis.call('SADD', KEYS[k], ARGV[1])
  else
    redis.call('SREM', KEYS[k], ARGV[1])
  end
end
if prev then
  return 't:' .. prev
end
return false
`)

// scriptSubsDelete removes subscription ARGV[1] from the hash KEYS[1], its
// tenant from KEYS[2] and its id from the partition sets KEYS[3..]. It
// returns {1 if it existed else 0, "t:" and its tenant or nil}.
var scriptSubsDelete = goredis.NewScript(`
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
local prev = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
for k = 3, #KEYS do
  redis.call('SREM', KEYS[k], ARGV[1])
end
if prev then
  return {existed, 't:' .. prev}
end
return {existed, false}
`)

// scriptOutboxTrim deletes the entries of the outbox KEYS[1..4] with id <=
// ARGV[1] (delete_through). It returns 1 if it deleted anything.
var scriptOutboxTrim = goredis.NewScript(luaCapOutbox + `
local upto = redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', 1)
if #upto == 0 then
  return 0
end
delete_through(outbox(1), upto[1][1])
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
	scriptLogAppend, scriptOutboxAppend, scriptOutboxRetire, scriptSubsPut, scriptSubsDelete, scriptRoute, scriptOutboxTrim, scriptOutboxLast,
	scriptLeaseAcquire, scriptLeaseRenew, scriptLeaseRelease,
	scriptSessionClaim, scriptSessionRelease,
}
