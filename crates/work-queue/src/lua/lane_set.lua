-- Set (or clear) one lane's share and limits in this shard.
-- KEYS[1] the lanes' rota, KEYS[2] wake-up marker
-- ARGV[1] family tag, ARGV[2] lane, ARGV[3] weight, ARGV[4] cap ('' none), ARGV[5] ms
-- between starts ('' none), ARGV[6] burst
-- A capped or held lane is placed again under the new limits (a lane on the rota meets
-- them at its next turn). Returns 0.
local L = lane_keys(ARGV[1])
local lane = ARGV[2]
local function put(field, value, default)
  if value == '' or value == default then
    redis.call('HDEL', L.cfg, lane .. field)
  else
    redis.call('HSET', L.cfg, lane .. field, value)
  end
end
put('|w', ARGV[3], '1')
put('|cap', ARGV[4], '')
put('|every', ARGV[5], '')
put('|burst', ARGV[6], '1')
local moved = redis.call('SREM', L.capped, lane) + redis.call('ZREM', L.held, lane)
if moved > 0 and redis.call('ZCARD', L.lane .. lane) > 0 then
  local now = now_ms()
  lane_place(L, lane, lane_cfg(L, lane, {}), now)
  redis.call('ZADD', KEYS[2], 0, '0')
end
return 0
