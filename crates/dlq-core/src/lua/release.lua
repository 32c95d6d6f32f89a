-- Releases redriven messages that were held back until their redrive was booked (see
-- dlq_redrive): each id still in the delayed set and never delivered since the redrive
-- wrote it moves to its lane's ready messages. An id whose hold ran out meanwhile (and was
-- reserved, perhaps failed and was scheduled again) is left alone. ARGV: tag, id... Returns how many
-- were released. O(ids * log N).
local k = dlq_keys(ARGV[1])
local released = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', k.delayed, id)
      and redis.call('HGET', k.msg .. id, 'deliveries') == '0' then
    redis.call('ZREM', k.delayed, id)
    released[#released + 1] = id
  end
end
local n = #released
if n > 0 then
  lane_readd(k.lanes, released, now_ms(), {})
  redis.call('ZADD', k.wake, 0, '0')
end
return n
