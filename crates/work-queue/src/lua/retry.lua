-- Give a held message back for a later attempt (transient failure).
-- KEYS[1] leases, KEYS[2] delayed, KEYS[3] wake-up marker
-- ARGV[1] family tag, ARGV[2] id, ARGV[3] token, ARGV[4] delay ms, ARGV[5] error text
-- Returns the attempt count after this failure, or 0 when the lease was lost. The message
-- keeps its lane and rank: when due, it goes back ahead of its lane's newer work.
local L = lane_keys(ARGV[1])
local id = ARGV[2]
local key = L.msg .. id
local f = redis.call('HMGET', key, 'token', 'busy', 'lane')
if f[1] ~= ARGV[3] then
  return 0
end
local now = now_ms()
local attempts = redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HDEL', key, 'token', 'busy')
redis.call('HSET', key, 'last_error', ARGV[5])
redis.call('ZREM', KEYS[1], id)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), id)
if f[2] then lane_release(L, f[3] or '', now, {}) end
-- A waiting worker bounds its wait by the earliest due time it last read; this retry may
-- be due sooner, so wake it to read again.
redis.call('ZADD', KEYS[3], 0, '0')
return attempts
