-- The Lua prelude every pipeline script starts with (work-queue's and dlq-core's): one
-- copy of the clock, of integer formatting, and of the message hash's layout.

-- Milliseconds since the epoch from the Redis clock: one clock for every replica, so a
-- worker with a skewed clock cannot shorten or stretch anyone's lease.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers are stored with %d: the default number-to-string conversion may use
-- exponent notation for large values, and tokens are compared as strings.
local function int(n)
  return string.format('%d', n)
end

-- Writes a new message hash `key` (`P{family}:msg:<id>`): its body, counts from zero
-- except `redrives`, and the enqueue time. The only writer of a fresh message: enqueue
-- (redrives 0) and a DLQ redrive (the item's redrive count plus one) both call it.
-- `lane` and `rank` place it among its lane's ready messages (see Lanes below); `prio` is
-- kept so a redrive of its DLQ item enqueues it at the same priority.
local function msg_write(key, body, redrives, now, lane, prio, rank)
  redis.call('HSET', key, 'body', body, 'deliveries', 0, 'attempts', 0,
    'redrives', int(redrives), 'enqueued_at', int(now), 'lane', lane, 'prio', prio,
    'rank', int(rank))
end

-- Lanes: fair share between the lanes (one per project) of a family shard, priorities
-- within a lane, and optional limits per lane. work-queue's README ("Fair share") explains
-- the layout and the bounds; with tag T:
--   T:rota        ZSET lane -> virtual time of its next turn: lanes with ready work that
--                 may be served now. Reserve serves the lowest; a turn of k messages moves
--                 the lane k / weight later.
--   T:lane:<lane> ZSET id -> rank: the lane's ready messages, lowest rank first. The rank
--                 is the lane's enqueue sequence, moved `lead` earlier for `high` and
--                 later for `low`; a retry keeps its rank.
--   T:held        ZSET lane -> ms when its start rate lets it start the next message
--   T:capped      SET lanes with ready work and `cap` messages in flight
--   T:lanes       HASH 'v' (the virtual time: tag of the last turn), 'n' (ready messages
--                 in all lanes), and per lane '<lane>|seq', '|last' (its tag when it left
--                 the rota), '|busy' (counted messages in flight), '|tat' (rate state)
--   T:lanecfg     HASH per lane '<lane>|w' (weight), '|cap', '|every' (ms between starts),
--                 '|burst'; and '|lead' (the priority step, default LANE_LEAD)
-- A lane with ready work is in exactly one of rota, held and capped.

local LANE_LEAD = 100000

-- The most messages a lane takes in one turn when many lanes have work (a lane takes more
-- when fewer lanes share a batch): the bound on how much of each other lane a newly ready
-- lane can wait behind, and what spreads the per-turn cost over several messages.
local LANE_QUANTUM = 4

-- A float as text that round-trips (Lua's default keeps 14 digits).
local function num(x)
  return string.format('%.17g', x)
end

local function lane_keys(tag)
  return {
    rota = tag .. ':rota', held = tag .. ':held', capped = tag .. ':capped',
    meta = tag .. ':lanes', cfg = tag .. ':lanecfg', lane = tag .. ':lane:',
    msg = tag .. ':msg:', wake = tag .. ':wake', legacy = tag .. ':ready',
  }
end

-- A lane's settings, read once per script call: weight w (>= 1), cap (nil: none), every
-- (ms between starts, nil: no rate) and burst (starts allowed at once, >= 1).
-- The settings from the stored values of '|w', '|cap', '|every', '|burst' (nil: unset).
local function lane_cfg_of(w, cap, every, burst)
  local c = {w = tonumber(w) or 1, cap = tonumber(cap), every = tonumber(every),
    burst = tonumber(burst) or 1}
  if c.w <= 0 then c.w = 1 end
  if c.every and c.every <= 0 then c.every = nil end
  if c.burst < 1 then c.burst = 1 end
  return c
end

local function lane_cfg(L, lane, cache)
  local c = cache[lane]
  if c then return c end
  local f = redis.call('HMGET', L.cfg, lane .. '|w', lane .. '|cap', lane .. '|every',
    lane .. '|burst')
  c = lane_cfg_of(f[1], f[2], f[3], f[4])
  cache[lane] = c
  return c
end

-- The earliest ms at which a lane whose rate state is `tat` may start a message (generic
-- cell rate algorithm: `burst` starts at once, then one per `every` ms).
local function lane_rate_at(c, tat)
  return tat - (c.burst - 1) * c.every
end

-- Puts a lane with ready work that is on none of rota, held, capped where it belongs now:
-- capped when its counted messages in flight reach its cap, held while its start rate
-- forbids a start, else on the rota at the later of the virtual time and its own last tag
-- (time spent idle earns no credit).
local function lane_place(L, lane, c, now)
  if c.cap then
    local busy = tonumber(redis.call('HGET', L.meta, lane .. '|busy')) or 0
    if busy >= c.cap then
      redis.call('SADD', L.capped, lane)
      return
    end
  end
  if c.every then
    local at = lane_rate_at(c, tonumber(redis.call('HGET', L.meta, lane .. '|tat')) or 0)
    if at > now then
      redis.call('ZADD', L.held, num(at), lane)
      return
    end
  end
  local f = redis.call('HMGET', L.meta, 'v', lane .. '|last')
  local t = math.max(tonumber(f[1]) or 0, tonumber(f[2]) or 0)
  redis.call('ZADD', L.rota, num(t), lane)
end

-- After work was added to a lane: places it unless it is placed already.
local function lane_wake(L, lane, now, cache)
  if redis.call('ZSCORE', L.rota, lane) or redis.call('ZSCORE', L.held, lane)
      or redis.call('SISMEMBER', L.capped, lane) == 1 then
    return
  end
  lane_place(L, lane, lane_cfg(L, lane, cache), now)
end

-- The priority step in ranks (see T:lanecfg '|lead').
local function lane_lead(L, cache)
  if not cache['|lead'] then
    cache['|lead'] = tonumber(redis.call('HGET', L.cfg, '|lead')) or LANE_LEAD
  end
  return cache['|lead']
end

-- Ranks for `n` fresh messages of `lane` at priority `prio` ('h', 'n' or 'l'): returns the
-- rank of the first; the others follow one apart.
local function lane_ranks(L, lane, prio, n, cache)
  local last = redis.call('HINCRBY', L.meta, lane .. '|seq', n)
  local off = 0
  if prio == 'h' then
    off = -lane_lead(L, cache)
  elseif prio == 'l' then
    off = lane_lead(L, cache)
  end
  return last - n + 1 + off
end

-- Puts messages whose hashes exist back among their lane's ready messages (a retry that is
-- due, a lease that ran out, a held redrive): each keeps the lane and rank its hash names.
-- A hash from before lanes has neither: it joins the default lane '' ahead of every newer
-- message, in the order it was enqueued.
local function lane_readd(L, ids, now, cache)
  local lanes = {}
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', L.msg .. id, 'lane', 'rank', 'enqueued_at')
    local lane, rank = f[1] or '', tonumber(f[2])
    if not rank then rank = -1e15 + (tonumber(f[3]) or 0) end
    redis.call('ZADD', L.lane .. lane, int(rank), id)
    lanes[lane] = true
  end
  redis.call('HINCRBY', L.meta, 'n', #ids)
  for lane in pairs(lanes) do
    lane_wake(L, lane, now, cache)
  end
end

-- A counted message of `lane` left flight (acked, retried, dead-lettered, lease ran out):
-- one fewer in flight, and a capped lane below its cap is placed again (and the wake-up
-- marker set, as it may be servable now).
local function lane_release(L, lane, now, cache)
  local busy = redis.call('HINCRBY', L.meta, lane .. '|busy', -1)
  if busy <= 0 then
    redis.call('HDEL', L.meta, lane .. '|busy')
    busy = 0
  end
  if redis.call('SISMEMBER', L.capped, lane) == 1 then
    local c = lane_cfg(L, lane, cache)
    if not c.cap or busy < c.cap then
      redis.call('SREM', L.capped, lane)
      lane_place(L, lane, c, now)
      redis.call('ZADD', L.wake, 0, '0')
    end
  end
end
