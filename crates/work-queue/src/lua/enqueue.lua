-- Enqueue messages that are not queued yet.
-- KEYS[1] ready list, KEYS[2] wake-up marker
-- ARGV[1] family tag; then pairs (id, body)
-- Returns the number of messages enqueued; an id whose msg hash exists is skipped, which
-- makes a retried call (after a timeout, say) complete the work instead of duplicating it.
local ready = KEYS[1]
local prefix = ARGV[1] .. ':msg:'
local now = now_ms()
local fresh = {}
for i = 2, #ARGV, 2 do
  local key = prefix .. ARGV[i]
  if redis.call('EXISTS', key) == 0 then
    msg_write(key, ARGV[i + 1], 0, now)
    fresh[#fresh + 1] = ARGV[i]
  end
end
if #fresh > 0 then
  redis.call('LPUSH', ready, unpack(fresh))
  -- One member, however many messages: a waiting worker takes it and reserves a batch,
  -- and its reserve passes the marker on while work remains.
  redis.call('ZADD', KEYS[2], 0, '0')
end
return #fresh
