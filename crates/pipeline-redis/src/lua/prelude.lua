-- Shared prelude of every work-queue script.
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
