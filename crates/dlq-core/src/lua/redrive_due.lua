-- Automatic redrive. ARGV: tag, now_ms, limit, max_redrives, base_ms, cap_ms, jitter,
-- hold_ms (see dlq_redrive).
-- Takes up to `limit` items from `due` scored <= now; for each: park it if it has been
-- redriven max_redrives times, else re-score it if its backoff has not elapsed, else
-- redrive it. O(limit * log N).
local k = dlq_keys(ARGV[1])
local now = tonumber(ARGV[2])
local max = tonumber(ARGV[4])
local base, cap, jitter = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local ids = redis.call('ZRANGEBYSCORE', k.due, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local f = dlq_fields(k, id)
  local rc, failed = tonumber(f[4]), tonumber(f[5])
  if not redis.call('ZSCORE', k.order, id) or not dlq_valid(f) or not rc or not failed then
    -- Stays listed (as malformed) for a person; only its automatic redrive stops.
    redis.call('ZREM', k.due, id)
    dlq_row(out, id, 'malformed', f)
  elseif rc >= max then
    redis.call('ZREM', k.due, id)
    redis.call('ZADD', k.parked, now, id)
    redis.call('HSET', k.item .. id, 'parked_at', now)
    f[3] = ARGV[2]
    dlq_row(out, id, 'parked', f)
  else
    local e = rc
    if e > 62 then e = 62 end
    local delay = math.min(cap, base * 2 ^ e) * (1 + jitter * dlq_frac(id))
    local due_at = failed + math.floor(delay)
    if due_at > now then
      redis.call('ZADD', k.due, due_at, id)
      dlq_row(out, id, 'deferred', nil, string.format('%d', due_at))
    else
      local g, st = dlq_redrive(k, id, now, ARGV[8])
      dlq_row(out, id, st, g)
    end
  end
end
return out
