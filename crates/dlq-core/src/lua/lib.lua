-- dlq-core Lua library. Prepended to every DLQ script (and to work-queue's fail script,
-- which calls dlq_push), after pipeline-redis's prelude (now_ms, int, msg_write), which it
-- uses. Key names are derived from the family tag `P{family}`, so every key touched here
-- shares the tag's hash slot; callers also declare the fixed keys as KEYS.

local function dlq_keys(tag)
  local p = tag .. ':dlq:'
  return {
    order = p .. 'order', time = p .. 'time', due = p .. 'due', parked = p .. 'parked',
    seq = p .. 'seq', dropped = p .. 'dropped', item = p .. 'item:',
    msg = tag .. ':msg:', wake = tag .. ':wake', delayed = tag .. ':delayed',
    lanes = lane_keys(tag),
  }
end

-- Removes every trace of `id` except its `order` entry, whose removal is the caller's claim.
-- Four O(log N) / O(1) commands.
local function dlq_unlink(k, id)
  redis.call('ZREM', k.time, id)
  redis.call('ZREM', k.due, id)
  redis.call('ZREM', k.parked, id)
  redis.call('DEL', k.item .. id)
end

-- The stored fields of one item: item JSON, payload, parked_at, retry_count, failed_at (ms),
-- and the lane and priority its message had (absent for items from before lanes).
local function dlq_fields(k, id)
  return redis.call('HMGET', k.item .. id, 'item', 'payload', 'parked_at', 'retry_count',
    'failed_at', 'lane', 'prio')
end

-- Whether the stored fields parse well enough to hand the item back or redrive it. Entries
-- that fail this are left in place, so they are listed as malformed and never vanish.
local function dlq_valid(f)
  if not f[1] or not f[2] then return false end
  local ok, d = pcall(cjson.decode, f[1])
  if not ok or type(d) ~= 'table' or type(d.id) ~= 'string' or type(d.error) ~= 'string'
      or type(d.failed_at) ~= 'string' then
    return false
  end
  return (pcall(cjson.decode, f[2]))
end

-- Deterministic fraction in [0, 1) from an id, for redrive jitter that every replica agrees
-- on. Polynomial hash mod 2^31-1: products stay below 2^53, so doubles compute it exactly
-- (dlq-core's Rust side mirrors it).
local function dlq_frac(id)
  local h = 0
  for i = 1, #id do
    h = (h * 31 + string.byte(id, i)) % 2147483647
  end
  return h / 2147483647
end

-- Appends one reply row (6 values): id, status, item, payload, parked_at, extra.
local function dlq_row(out, id, status, f, extra)
  f = f or {}
  out[#out + 1] = id
  out[#out + 1] = status
  out[#out + 1] = f[1] or false
  out[#out + 1] = f[2] or false
  out[#out + 1] = f[3] or false
  out[#out + 1] = extra or false
end

-- Pushes an item; replaces an earlier entry with the same id (one entry per id). Returns
-- {seq, replaced (0/1), {ids dropped by retention}}. O(log N), plus O(log N) per drop.
--   tag: 'P{family}'; item_json: the item without payload/parked; payload: JSON text;
--   failed_at_ms, retry_count: numbers; transient: '1'/'0' (or true/false);
--   max_items: retention bound, 0 = unlimited; lane, prio: the message's lane and priority
--   (optional; a redrive enqueues it there).
local function dlq_push(tag, id, item_json, payload, failed_at_ms, retry_count, transient, max_items,
    lane, prio)
  local k = dlq_keys(tag)
  local replaced = redis.call('ZREM', k.order, id)
  dlq_unlink(k, id)
  local seq = redis.call('INCR', k.seq)
  redis.call('HSET', k.item .. id, 'item', item_json, 'payload', payload,
    'retry_count', retry_count, 'failed_at', failed_at_ms, 'seq', seq)
  if lane then
    redis.call('HSET', k.item .. id, 'lane', lane, 'prio', prio or 'n')
  end
  redis.call('ZADD', k.order, seq, id)
  redis.call('ZADD', k.time, failed_at_ms, id)
  if transient == true or tostring(transient) == '1' then
    -- First eligible at failed_at; redrive_due computes the real backoff lazily.
    redis.call('ZADD', k.due, failed_at_ms, id)
  end
  local dropped = {}
  local max = tonumber(max_items) or 0
  if max > 0 then
    local excess = redis.call('ZCARD', k.order) - max
    if excess > 0 then
      local oldest = redis.call('ZPOPMIN', k.order, excess)
      for i = 1, #oldest, 2 do
        dlq_unlink(k, oldest[i])
        dropped[#dropped + 1] = oldest[i]
      end
      redis.call('INCRBY', k.dropped, #dropped)
    end
  end
  return {seq, replaced, dropped}
end

-- Takes `id` out of the DLQ. Returns fields and a status: 'missing', 'malformed' (left in
-- place unless `force`), or 'taken'. Within one script the check and the ZREM cannot be
-- split, so of concurrent callers exactly one gets 'taken'. O(log N).
local function dlq_take(k, id, force)
  if not redis.call('ZSCORE', k.order, id) then return nil, 'missing' end
  local f = dlq_fields(k, id)
  if not force and not dlq_valid(f) then return f, 'malformed' end
  redis.call('ZREM', k.order, id)
  dlq_unlink(k, id)
  return f, 'taken'
end

-- Takes `id` out of the DLQ and into the family's work queue, in the same script. If the
-- message already exists (re-enqueued meanwhile) it is not enqueued twice. Status:
-- 'missing', 'malformed', 'enqueued' or 'already_queued'. O(log N).
-- With `hold_ms` > 0 the new message waits in the queue's delayed set for that long instead
-- of being ready: the caller books the redrive in Postgres, then releases it (release.lua),
-- so no worker can start it (and write its events) before its `redriven` event exists. A
-- caller that dies before the release costs the message `hold_ms` of delay, nothing more.
local function dlq_redrive(k, id, now, hold_ms, prio_override)
  local f, st = dlq_take(k, id, false)
  if st ~= 'taken' then return f, st end
  local msg = k.msg .. id
  if redis.call('EXISTS', msg) == 1 then return f, 'already_queued' end
  local L, cache = k.lanes, {}
  local lane, prio = f[6] or '', f[7] or 'n'
  if prio_override and prio_override ~= '' then prio = prio_override end
  local rank = lane_ranks(L, lane, prio, 1, cache)
  msg_write(msg, f[2], (tonumber(f[4]) or 0) + 1, now, lane, prio, rank)
  local hold = tonumber(hold_ms) or 0
  if hold > 0 then
    redis.call('ZADD', k.delayed, now + hold, id)
    -- A waiting worker bounds its wait by the earliest due time it last read.
    redis.call('ZADD', k.wake, 0, '0')
    return f, 'enqueued'
  end
  redis.call('ZADD', L.lane .. lane, int(rank), id)
  redis.call('HINCRBY', L.meta, 'n', 1)
  lane_wake(L, lane, now, cache)
  -- The work queue's wake-up marker: a worker blocked on it reserves at once.
  redis.call('ZADD', k.wake, 0, '0')
  return f, 'enqueued'
end
