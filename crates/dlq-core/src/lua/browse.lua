-- Newest-first page with filters. ARGV: tag, max score ('+inf' or '(<seq>', exclusive),
-- page size, scan budget, error kind filter ('' | 'transient' | 'permanent' | 'parked'),
-- job id filter ('' or a UUID).
-- Looks at no more than `budget` ids (O(log N + budget)): a filter that matches rarely
-- returns a short page and the seq where the scan stopped, never a walk of the whole DLQ.
-- Reply: the rows (6 values each, the seq as `extra`), then two values: the seq of the last
-- id looked at (or false at the end of the DLQ) and how many ids were looked at.
local k = dlq_keys(ARGV[1])
local want = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local kind = ARGV[5]
local job = ARGV[6]
local needle = nil
if job ~= '' then needle = '"job_id":"' .. job .. '"' end
local ids = redis.call('ZREVRANGEBYSCORE', k.order, ARGV[2], '-inf',
  'WITHSCORES', 'LIMIT', 0, budget)
local out = {}
local found = 0
local last = false
local looked = 0
for i = 1, #ids, 2 do
  if found >= want then break end
  local id = ids[i]
  looked = looked + 1
  last = ids[i + 1]
  local ok = true
  if kind == 'parked' then
    ok = redis.call('ZSCORE', k.parked, id) ~= false
  elseif kind == 'transient' then
    ok = redis.call('ZSCORE', k.due, id) ~= false
  elseif kind == 'permanent' then
    ok = redis.call('ZSCORE', k.due, id) == false and redis.call('ZSCORE', k.parked, id) == false
  end
  local f = nil
  if ok and needle then
    f = dlq_fields(k, id)
    ok = f[1] ~= false and string.find(f[1], needle, 1, true) ~= nil
  end
  if ok then
    dlq_row(out, id, 'listed', f or dlq_fields(k, id), ids[i + 1])
    found = found + 1
  end
end
-- The DLQ ends here when the range came back short and every id in it was looked at.
if #ids < 2 * budget and looked * 2 == #ids then last = false end
out[#out + 1] = last
out[#out + 1] = looked
return out
