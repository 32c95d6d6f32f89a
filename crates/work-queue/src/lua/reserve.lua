-- Reserve up to ARGV[2] messages, served fairly between lanes.
-- KEYS[1] the lanes' rota, KEYS[2] leases, KEYS[3] delayed, KEYS[4] token_seq, KEYS[5]
-- wake-up marker
-- ARGV[1] family tag, ARGV[2] max, ARGV[3] visibility timeout ms, ARGV[4] housekeeping limit
-- Returns {dropped, promoted, reclaimed, ids, tokens, bodies, deliveries, attempts, redrives,
-- next_due}: one column per field rather than one table per message, which saves Lua
-- allocations. next_due is -1 unless nothing was reserved; then it is the ms until the
-- earliest retry, lease deadline or rate-held lane (0 if one is already due), or -1 if
-- there is none.
local rota, leases, delayed, seq, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local L = lane_keys(ARGV[1])
local max = tonumber(ARGV[2])
local visibility = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local now = now_ms()
local cache = {}

-- Housekeeping first, bounded per call so a reserve never turns into a long scan: retries
-- that are due, then leases whose holder went quiet, go back to their lanes at the rank
-- they had (ahead of newer work of the lane, because they have waited longest); lanes
-- whose start rate allows a start again go back on the rota; and ids in the list of a
-- version before lanes join the default lane.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
if #due > 0 then
  redis.call('ZREM', delayed, unpack(due))
  lane_readd(L, due, now, cache)
end
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
if #expired > 0 then
  redis.call('ZREM', leases, unpack(expired))
  for _, id in ipairs(expired) do
    -- Clearing the token is the fence: the old holder's ack, renew or nack no longer
    -- matches, even before anyone reserves the message again.
    local f = redis.call('HMGET', L.msg .. id, 'busy', 'lane')
    redis.call('HDEL', L.msg .. id, 'token', 'busy')
    if f[1] then lane_release(L, f[2] or '', now, cache) end
  end
  lane_readd(L, expired, now, cache)
end
local thawed = redis.call('ZRANGEBYSCORE', L.held, '-inf', now, 'LIMIT', 0, limit)
for _, lane in ipairs(thawed) do
  redis.call('ZREM', L.held, lane)
  if redis.call('ZCARD', L.lane .. lane) > 0 then
    lane_place(L, lane, lane_cfg(L, lane, cache), now)
  end
end
local dropped = 0
local legacy = redis.call('RPOP', L.legacy, limit)
if legacy then
  local live = {}
  for _, id in ipairs(legacy) do
    if redis.call('EXISTS', L.msg .. id) == 1 then
      live[#live + 1] = id
    else
      dropped = dropped + 1
    end
  end
  if #live > 0 then lane_readd(L, live, now, cache) end
end

-- Serving, in rounds. A round reads the lanes with the lowest tags, enough to fill what is
-- still wanted at LANE_QUANTUM each, and gives each its turn in tag order: up to LANE_QUANTUM
-- messages, or its share by weight of what is wanted when that is more (a lone lane takes
-- the whole batch); never past a lane's cap or start rate. Each lane's tag then moves on by what it
-- took over its weight. A lane that turns out empty leaves the rota (lanes are left on it
-- when their last message is taken, and leave at their next round: that saves a ZCARD per
-- turn). Every round takes a message or a lane off the rota, so the loop is bounded.
local picked, picked_lane = {}, {}
local v
local configured = redis.call('HLEN', L.cfg) > 0
local rounds = 0
while #picked < max and rounds < max + 16 do
  rounds = rounds + 1
  local want = max - #picked
  -- Enough lanes to fill what is wanted at a quantum each.
  local top = redis.call('ZRANGE', rota, 0, math.ceil(want / LANE_QUANTUM) - 1, 'WITHSCORES')
  local m = #top / 2
  if m == 0 then break end
  local lanes, tags, total_w = {}, {}, 0
  if configured then
    local fields = {}
    for i = 1, m do
      local lane = top[2 * i - 1]
      if not cache[lane] then
        for _, f in ipairs({'|w', '|cap', '|every', '|burst'}) do
          fields[#fields + 1] = lane .. f
        end
      end
    end
    if #fields > 0 then
      local vals = redis.call('HMGET', L.cfg, unpack(fields))
      for j = 1, #fields, 4 do
        cache[string.sub(fields[j], 1, -3)] =
          lane_cfg_of(vals[j], vals[j + 1], vals[j + 2], vals[j + 3])
      end
    end
  end
  for i = 1, m do
    local lane = top[2 * i - 1]
    lanes[i], tags[i] = lane, tonumber(top[2 * i])
    if not cache[lane] then cache[lane] = lane_cfg_of() end
    total_w = total_w + cache[lane].w
  end
  if not v then v = tags[1] end
  local zadd = {}
  for i = 1, m do
    if #picked >= max then break end
    local lane, t = lanes[i], tags[i]
    local c = cache[lane]
    local n = math.min(max - #picked, math.max(LANE_QUANTUM, math.floor(want * c.w / total_w)))
    local busy, tat = 0, nil
    if c.cap then
      busy = tonumber(redis.call('HGET', L.meta, lane .. '|busy')) or 0
      n = math.min(n, c.cap - busy)
    end
    if c.every then
      tat = math.max(tonumber(redis.call('HGET', L.meta, lane .. '|tat')) or 0, now)
      n = math.min(n, math.floor((now + (c.burst - 1) * c.every - tat) / c.every) + 1)
    end
    local got = {}
    if n > 0 then got = redis.call('ZPOPMIN', L.lane .. lane, n) end
    local k = #got / 2
    for j = 1, #got, 2 do
      picked[#picked + 1] = got[j]
      picked_lane[#picked] = c.cap and lane or false
    end
    local next_tag = t + k / c.w
    if c.cap and k > 0 then
      busy = busy + k
      redis.call('HSET', L.meta, lane .. '|busy', busy)
    end
    if c.every and k > 0 then
      tat = tat + k * c.every
      redis.call('HSET', L.meta, lane .. '|tat', int(tat))
    end
    if n > 0 and k < n then
      -- Empty: off the rota until work comes (at no less than this tag).
      redis.call('ZREM', rota, lane)
      redis.call('HSET', L.meta, lane .. '|last', num(next_tag))
    elseif c.cap and busy >= c.cap then
      redis.call('ZREM', rota, lane)
      redis.call('HSET', L.meta, lane .. '|last', num(next_tag))
      redis.call('SADD', L.capped, lane)
    elseif c.every and lane_rate_at(c, tat) > now then
      redis.call('ZREM', rota, lane)
      redis.call('HSET', L.meta, lane .. '|last', num(next_tag))
      redis.call('ZADD', L.held, num(lane_rate_at(c, tat)), lane)
    elseif k > 0 then
      zadd[#zadd + 1] = num(next_tag)
      zadd[#zadd + 1] = lane
    end
  end
  if #zadd > 0 then
    redis.call('ZADD', rota, unpack(zadd))
  end
end
if v then
  redis.call('HSET', L.meta, 'v', num(v))
end
if #picked > 0 then
  redis.call('HINCRBY', L.meta, 'n', -#picked)
end

local ids_out, tokens, bodies, delivs, attempts, redrives = {}, {}, {}, {}, {}, {}
if #picked > 0 then
  -- One INCRBY hands out the whole batch's tokens: first+1 .. first+n.
  local first = redis.call('INCRBY', seq, #picked) - #picked
  local deadline = now + visibility
  local lease_args = {}
  for i, id in ipairs(picked) do
    local key = L.msg .. id
    local f = redis.call('HMGET', key, 'body', 'deliveries', 'attempts', 'redrives')
    local body = f[1]
    if not body and redis.call('EXISTS', key) == 1 then
      -- A hash without a body: deliver it with an empty body so the worker dead-letters
      -- it as malformed instead of the message vanishing.
      body = ''
    end
    if body then
      local token = int(first + i)
      local deliveries = (tonumber(f[2]) or 0) + 1
      if picked_lane[i] then
        -- Counted against its lane's cap until it leaves flight.
        redis.call('HSET', key, 'token', token, 'deliveries', deliveries, 'busy', '1')
      else
        redis.call('HSET', key, 'token', token, 'deliveries', deliveries)
      end
      lease_args[#lease_args + 1] = deadline
      lease_args[#lease_args + 1] = id
      local n = #ids_out + 1
      ids_out[n], tokens[n], bodies[n], delivs[n] = id, token, body, deliveries
      attempts[n], redrives[n] = tonumber(f[3]) or 0, tonumber(f[4]) or 0
    else
      -- An id without its hash carries no work (the hash was lost outside this crate's
      -- scripts, e.g. a manual DEL); the caller logs and counts it.
      dropped = dropped + 1
      if picked_lane[i] then lane_release(L, picked_lane[i], now, cache) end
    end
  end
  if #lease_args > 0 then
    -- A waiting worker bounds its wait by the earliest deadline it last read. When there
    -- was none, it could sleep through this lease's end: wake it to read this one. Later
    -- leases end after this one (renewals only push deadlines later), so it learns of them
    -- in time by reserving again when this one is due.
    if redis.call('ZCARD', leases) == 0 then
      redis.call('ZADD', wake, 0, '0')
    end
    redis.call('ZADD', leases, unpack(lease_args))
  end
  -- Work is left: pass the marker on, so another waiting worker takes the rest.
  if redis.call('ZCARD', rota) > 0 then
    redis.call('ZADD', wake, 0, '0')
  end
end
local next_due = -1
if #ids_out == 0 then
  for _, set in ipairs({delayed, leases, L.held}) do
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if first[2] then
      local wait = math.max(0, tonumber(first[2]) - now)
      if next_due < 0 or wait < next_due then next_due = wait end
    end
  end
end
return {dropped, #due, #expired, ids_out, tokens, bodies, delivs, attempts, redrives,
  int(next_due)}
