-- Acknowledge (finish) held messages.
-- KEYS[1] leases
-- ARGV[1] family tag; then pairs (id, token)
-- Returns one integer per pair: 1 acked, 0 lease lost (the token no longer matches, so
-- another worker may hold the message now: it is left alone).
local L = lane_keys(ARGV[1])
local now, cache
local res = {}
local done = {}
for i = 2, #ARGV, 2 do
  local key = L.msg .. ARGV[i]
  local f = redis.call('HMGET', key, 'token', 'busy', 'lane')
  if f[1] == ARGV[i + 1] then
    redis.call('DEL', key)
    done[#done + 1] = ARGV[i]
    res[#res + 1] = 1
    if f[2] then
      now, cache = now or now_ms(), cache or {}
      lane_release(L, f[3] or '', now, cache)
    end
  else
    res[#res + 1] = 0
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[1], unpack(done))
end
return res
