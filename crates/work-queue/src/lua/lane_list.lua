-- The lanes of this shard with ready work or counted messages in flight.
-- KEYS[1] the lanes' rota
-- ARGV[1] family tag, ARGV[2] most lanes read from each of rota, held and capped
-- Returns rows {lane, ready, in flight, state} with state 'serving', 'held' or 'capped'.
local L = lane_keys(ARGV[1])
local most = tonumber(ARGV[2])
local out = {}
local seen = {}
local function row(lane, state)
  if seen[lane] then return end
  seen[lane] = true
  local busy = tonumber(redis.call('HGET', L.meta, lane .. '|busy')) or 0
  out[#out + 1] = {lane, redis.call('ZCARD', L.lane .. lane), busy, state}
end
for _, lane in ipairs(redis.call('ZRANGE', L.rota, 0, most - 1)) do row(lane, 'serving') end
for _, lane in ipairs(redis.call('ZRANGE', L.held, 0, most - 1)) do row(lane, 'held') end
for _, lane in ipairs(redis.call('SRANDMEMBER', L.capped, most)) do row(lane, 'capped') end
-- Lanes whose messages are all in flight are on none of the three.
local cursor = '0'
repeat
  local r = redis.call('HSCAN', L.meta, cursor, 'MATCH', '*|busy', 'COUNT', 200)
  cursor = r[1]
  for i = 1, #r[2], 2 do
    local lane = string.sub(r[2][i], 1, -6)
    if #out < 3 * most then row(lane, 'serving') end
  end
until cursor == '0' or #out >= 3 * most
-- Legacy ids (from before lanes) wait for the default lane.
local legacy = redis.call('LLEN', L.legacy)
if legacy > 0 then
  if seen[''] then
    for _, r in ipairs(out) do
      if r[1] == '' then r[2] = r[2] + legacy end
    end
  else
    out[#out + 1] = {'', legacy, 0, 'serving'}
  end
end
return out
