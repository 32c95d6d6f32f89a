-- Give a held message back for a later attempt (transient failure).
-- KEYS[1] leases, KEYS[2] delayed, KEYS[3] wake-up marker
-- ARGV[1] family tag, ARGV[2] id, ARGV[3] token, ARGV[4] delay ms, ARGV[5] error text
-- Returns the attempt count after this failure, or 0 when the lease was lost.
local id = ARGV[2]
local key = ARGV[1] .. ':msg:' .. id
if redis.call('HGET', key, 'token') ~= ARGV[3] then
  return 0
end
local attempts = redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HDEL', key, 'token')
redis.call('HSET', key, 'last_error', ARGV[5])
redis.call('ZREM', KEYS[1], id)
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[4]), id)
-- A waiting worker bounds its wait by the earliest due time it last read; this retry may
-- be due sooner, so wake it to read again.
redis.call('ZADD', KEYS[3], 0, '0')
return attempts
