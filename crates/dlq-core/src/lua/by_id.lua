-- Operations by id. ARGV: tag, op, id... ; op is get | pop | discard | park | redrive, and
-- `redrive:<hold_ms>:<priority>` holds the redriven messages back (see dlq_redrive) and
-- enqueues them at another priority ('h', 'n', 'l'; empty keeps each message's own).
-- Each id costs O(log N).
local k = dlq_keys(ARGV[1])
local op, hold_ms, prio = string.match(ARGV[2], '^([a-z]+):?(%d*):?([hnl]?)$')
local now = now_ms()
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if op == 'get' then
    if redis.call('ZSCORE', k.order, id) then
      dlq_row(out, id, 'found', dlq_fields(k, id))
    else
      dlq_row(out, id, 'missing')
    end
  elseif op == 'pop' or op == 'discard' then
    local f, st = dlq_take(k, id, op == 'discard')
    dlq_row(out, id, st, f)
  elseif op == 'park' then
    if not redis.call('ZSCORE', k.order, id) then
      dlq_row(out, id, 'missing')
    else
      local f = dlq_fields(k, id)
      local st = 'already_parked'
      if not f[3] then
        redis.call('ZREM', k.due, id)
        redis.call('ZADD', k.parked, now, id)
        redis.call('HSET', k.item .. id, 'parked_at', now)
        f[3] = string.format('%d', now)
        st = 'parked'
      end
      dlq_row(out, id, st, f)
    end
  elseif op == 'redrive' then
    local f, st = dlq_redrive(k, id, now, hold_ms, prio)
    dlq_row(out, id, st, f)
  else
    return redis.error_reply('unknown op ' .. tostring(ARGV[2]))
  end
end
return out
