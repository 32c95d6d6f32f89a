-- KEYS: the family's fixed DLQ keys (see FamilyKeys::dlq_script_keys) + the item key.
-- ARGV: tag, id, item_json, payload, failed_at_ms, retry_count, transient, max_items.
return dlq_push(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
