-- Removes up to `batch` items whose failed_at is before the cutoff (parked ones included).
-- ARGV: tag, 'age' | 'cutoff', ms, batch. Returns {removed, cutoff_ms}.
-- O((log N + 1) * removed).
local k = dlq_keys(ARGV[1])
local cutoff = tonumber(ARGV[3])
if ARGV[2] == 'age' then cutoff = now_ms() - cutoff end
local ids = redis.call('ZRANGEBYSCORE', k.time, '-inf', string.format('(%d', cutoff),
  'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  redis.call('ZREM', k.order, id)
  dlq_unlink(k, id)
end
return {#ids, string.format('%d', cutoff)}
