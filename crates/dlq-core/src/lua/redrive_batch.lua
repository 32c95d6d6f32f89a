-- One batch of a bulk redrive, oldest first. ARGV: tag, after_seq (exclusive),
-- upto_seq (inclusive), batch, hold_ms (see dlq_redrive). Rows carry the seq as `extra`.
-- O(batch * log N).
local k = dlq_keys(ARGV[1])
local rows = redis.call('ZRANGEBYSCORE', k.order, '(' .. ARGV[2], ARGV[3],
  'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local now = now_ms()
local out = {}
for i = 1, #rows, 2 do
  local f, st = dlq_redrive(k, rows[i], now, ARGV[5])
  dlq_row(out, rows[i], st, f, rows[i + 1])
end
return out
