-- Reserve up to ARGV[2] messages.
-- KEYS[1] ready, KEYS[2] leases, KEYS[3] delayed, KEYS[4] token_seq, KEYS[5] wake-up marker
-- ARGV[1] family tag, ARGV[2] max, ARGV[3] visibility timeout ms, ARGV[4] housekeeping limit
-- Returns {dropped, promoted, reclaimed, ids, tokens, bodies, deliveries, attempts, redrives,
-- next_due}: one column per field rather than one table per message, which saves Lua
-- allocations. next_due is -1 unless nothing was reserved; then it is the ms until the
-- earliest retry or lease deadline (0 if one is already due), or -1 if there is none.
local ready, leases, delayed, seq, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix = ARGV[1] .. ':msg:'
local max = tonumber(ARGV[2])
local visibility = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local now = now_ms()

-- Housekeeping first, bounded per call so a reserve never turns into a long scan: retries
-- that are due, then leases whose holder went quiet. Both go to the consumer end of the
-- ready list, ahead of newer work, because they have waited longest.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
if #due > 0 then
  redis.call('ZREM', delayed, unpack(due))
  redis.call('RPUSH', ready, unpack(due))
end
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
if #expired > 0 then
  redis.call('ZREM', leases, unpack(expired))
  for _, id in ipairs(expired) do
    -- Clearing the token is the fence: the old holder's ack, renew or nack no longer
    -- matches, even before anyone reserves the message again.
    redis.call('HDEL', prefix .. id, 'token')
  end
  redis.call('RPUSH', ready, unpack(expired))
end

local ids_out, tokens, bodies, delivs, attempts, redrives = {}, {}, {}, {}, {}, {}
local dropped = 0
local ids = redis.call('RPOP', ready, max)
if ids then
  -- One INCRBY hands out the whole batch's tokens: first+1 .. first+n.
  local first = redis.call('INCRBY', seq, #ids) - #ids
  local deadline = now + visibility
  local lease_args = {}
  for i, id in ipairs(ids) do
    local key = prefix .. id
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
      redis.call('HSET', key, 'token', token, 'deliveries', deliveries)
      lease_args[#lease_args + 1] = deadline
      lease_args[#lease_args + 1] = id
      local n = #ids_out + 1
      ids_out[n], tokens[n], bodies[n], delivs[n] = id, token, body, deliveries
      attempts[n], redrives[n] = tonumber(f[3]) or 0, tonumber(f[4]) or 0
    else
      -- An id without its hash carries no work (the hash was lost outside this crate's
      -- scripts, e.g. a manual DEL); the caller logs and counts it.
      dropped = dropped + 1
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
  if redis.call('LLEN', ready) > 0 then
    redis.call('ZADD', wake, 0, '0')
  end
end
local next_due = -1
if #ids_out == 0 then
  for _, set in ipairs({delayed, leases}) do
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if first[2] then
      local wait = math.max(0, tonumber(first[2]) - now)
      if next_due < 0 or wait < next_due then next_due = wait end
    end
  end
end
return {dropped, #due, #expired, ids_out, tokens, bodies, delivs, attempts, redrives,
  int(next_due)}
