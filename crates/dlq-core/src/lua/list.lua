-- Newest first page. ARGV: tag, max score ('+inf' or '(<seq>', exclusive), count.
-- O(log N + count). Rows carry the seq as `extra`.
local k = dlq_keys(ARGV[1])
local rows = redis.call('ZREVRANGEBYSCORE', k.order, ARGV[2], '-inf',
  'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #rows, 2 do
  dlq_row(out, rows[i], 'listed', dlq_fields(k, rows[i]), rows[i + 1])
end
return out
