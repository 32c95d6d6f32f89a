-- Extend a held lease.
-- KEYS[1] leases
-- ARGV[1] family tag, ARGV[2] id, ARGV[3] token, ARGV[4] visibility timeout ms
-- Returns the new deadline (ms since the epoch), or 0 when the lease was lost.
local key = ARGV[1] .. ':msg:' .. ARGV[2]
if redis.call('HGET', key, 'token') ~= ARGV[3] then
  return 0
end
local deadline = now_ms() + tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], deadline, ARGV[2])
return deadline
