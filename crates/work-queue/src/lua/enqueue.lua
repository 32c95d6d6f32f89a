-- Enqueue messages that are not queued yet.
-- KEYS[1] the lanes' rota, KEYS[2] wake-up marker
-- ARGV[1] family tag; then groups of four (id, lane, priority 'h'/'n'/'l', body)
-- Returns the number of messages enqueued; an id whose msg hash exists is skipped, which
-- makes a retried call (after a timeout, say) complete the work instead of duplicating it.
local L = lane_keys(ARGV[1])
local now = now_ms()
local cache = {}
-- Fresh messages by lane and priority, in argument order (ranks follow that order).
local groups, order = {}, {}
local fresh = 0
local seen = {}
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  -- An id repeated within the call is queued once, like one already queued.
  if not seen[id] and redis.call('EXISTS', L.msg .. id) == 0 then
    seen[id] = true
    local g = ARGV[i + 1] .. '\0' .. ARGV[i + 2]
    if not groups[g] then
      groups[g] = {lane = ARGV[i + 1], prio = ARGV[i + 2], items = {}}
      order[#order + 1] = g
    end
    local items = groups[g].items
    items[#items + 1] = i
    fresh = fresh + 1
  end
end
for _, g in ipairs(order) do
  local grp = groups[g]
  local first = lane_ranks(L, grp.lane, grp.prio, #grp.items, cache)
  local args = {}
  for j, i in ipairs(grp.items) do
    local rank = first + j - 1
    msg_write(L.msg .. ARGV[i], ARGV[i + 3], 0, now, grp.lane, grp.prio, rank)
    args[#args + 1] = int(rank)
    args[#args + 1] = ARGV[i]
  end
  redis.call('ZADD', L.lane .. grp.lane, unpack(args))
  lane_wake(L, grp.lane, now, cache)
end
if fresh > 0 then
  redis.call('HINCRBY', L.meta, 'n', fresh)
  -- One member, however many messages: a waiting worker takes it and reserves a batch,
  -- and its reserve passes the marker on while work remains.
  redis.call('ZADD', KEYS[2], 0, '0')
end
return fresh
