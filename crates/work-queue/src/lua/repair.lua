-- Repairs the lanes' bookkeeping of one shard, for state changed outside the queue's
-- scripts (a hash deleted by hand, a partial restore): recounts each lane's counted
-- messages in flight from the leases, and places again every lane with ready work that is
-- on none of rota, held and capped, or capped below its cap. Does nothing to the counts when
-- there are more than ARGV[2] leases (too many to read in one call).
-- KEYS[1] leases, KEYS[2] the lanes' rota, KEYS[3] wake-up marker
-- ARGV[1] family tag, ARGV[2] most leases read
-- Returns {counts fixed, lanes placed}.
local L = lane_keys(ARGV[1])
local most = tonumber(ARGV[2])
local now = now_ms()
local cache = {}
local fixed, placed = 0, 0
local ids = redis.call('ZRANGE', KEYS[1], 0, most)
if #ids <= most then
  local counts = {}
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', L.msg .. id, 'busy', 'lane')
    if f[1] then
      local lane = f[2] or ''
      counts[lane] = (counts[lane] or 0) + 1
    end
  end
  local cursor = '0'
  local stored = {}
  repeat
    local r = redis.call('HSCAN', L.meta, cursor, 'MATCH', '*|busy', 'COUNT', 500)
    cursor = r[1]
    for i = 1, #r[2], 2 do
      stored[string.sub(r[2][i], 1, -6)] = tonumber(r[2][i + 1]) or 0
    end
  until cursor == '0'
  for lane, n in pairs(stored) do
    if (counts[lane] or 0) ~= n then
      if counts[lane] then
        redis.call('HSET', L.meta, lane .. '|busy', counts[lane])
      else
        redis.call('HDEL', L.meta, lane .. '|busy')
      end
      fixed = fixed + 1
    end
  end
  for lane, n in pairs(counts) do
    if not stored[lane] then
      redis.call('HSET', L.meta, lane .. '|busy', n)
      fixed = fixed + 1
    end
  end
end
-- Every lane that ever had work has a sequence field.
local cursor = '0'
repeat
  local r = redis.call('HSCAN', L.meta, cursor, 'MATCH', '*|seq', 'COUNT', 500)
  cursor = r[1]
  for i = 1, #r[2], 2 do
    local lane = string.sub(r[2][i], 1, -5)
    if redis.call('ZCARD', L.lane .. lane) > 0 then
      local capped = redis.call('SISMEMBER', L.capped, lane) == 1
      if capped then
        local c = lane_cfg(L, lane, cache)
        local busy = tonumber(redis.call('HGET', L.meta, lane .. '|busy')) or 0
        if not c.cap or busy < c.cap then
          redis.call('SREM', L.capped, lane)
          capped = false
        end
      end
      if not capped and not redis.call('ZSCORE', L.rota, lane)
          and not redis.call('ZSCORE', L.held, lane) then
        lane_place(L, lane, lane_cfg(L, lane, cache), now)
        placed = placed + 1
      end
    end
  end
until cursor == '0'
if placed > 0 then
  redis.call('ZADD', KEYS[3], 0, '0')
end
return {fixed, placed}
