-- The Lua prelude every pipeline script starts with (work-queue's and dlq-core's): one
-- copy of the clock, of integer formatting, and of the message hash's layout.

-- Milliseconds since the epoch from the Redis clock: one clock for every replica, so a
-- worker with a skewed clock cannot shorten or stretch anyone's lease.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers are stored with %d: the default number-to-string conversion may use
-- exponent notation for large values, and tokens are compared as strings.
local function int(n)
  return string.format('%d', n)
end

-- Writes a new message hash `key` (`P{family}:msg:<id>`): its body, counts from zero
-- except `redrives`, and the enqueue time. The only writer of a fresh message: enqueue
-- (redrives 0) and a DLQ redrive (the item's redrive count plus one) both call it.
local function msg_write(key, body, redrives, now)
  redis.call('HSET', key, 'body', body, 'deliveries', 0, 'attempts', 0,
    'redrives', int(redrives), 'enqueued_at', int(now))
end
