-- Releases redriven messages that were held back until their redrive was booked (see
-- dlq_redrive): each id still in the delayed set and never delivered since the redrive
-- wrote it moves to the ready list. An id whose hold ran out meanwhile (and was reserved,
-- perhaps failed and was scheduled again) is left alone. ARGV: tag, id... Returns how many
-- were released. O(ids * log N).
local k = dlq_keys(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', k.delayed, id)
      and redis.call('HGET', k.msg .. id, 'deliveries') == '0' then
    redis.call('ZREM', k.delayed, id)
    redis.call('LPUSH', k.ready, id)
    n = n + 1
  end
end
if n > 0 then
  redis.call('ZADD', k.wake, 0, '0')
end
return n
