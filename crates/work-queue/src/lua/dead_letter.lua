-- Move a held message to its family's DLQ. Prepended with dlq-core's Lua library, whose
-- dlq_push does the DLQ side, so there is one copy of that logic.
-- KEYS[1] leases, KEYS[2..] the DLQ's fixed keys (declared so a cluster client routes the
-- call to the family's slot)
-- ARGV[1] family tag, ARGV[2] token, ARGV[3..9] dlq_push's arguments after the tag:
-- id, item_json, payload, failed_at_ms, retry_count, transient, max_items
-- Returns {1, {ids the DLQ's retention dropped}} when dead-lettered, {0, {}} when the lease
-- was lost (nothing changed). The item keeps the message's lane and priority, so a
-- redrive enqueues it where it was.
local L = lane_keys(ARGV[1])
local id = ARGV[3]
local key = L.msg .. id
local f = redis.call('HMGET', key, 'token', 'busy', 'lane', 'prio')
if f[1] ~= ARGV[2] then
  return {0, {}}
end
redis.call('ZREM', KEYS[1], id)
redis.call('DEL', key)
if f[2] then lane_release(L, f[3] or '', now_ms(), {}) end
local pushed = dlq_push(ARGV[1], id, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9],
  f[3], f[4])
return {1, pushed[3]}
