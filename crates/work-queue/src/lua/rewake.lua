-- Put the wake-up marker back if work is ready (a waiter gave up its wait mid-way and may
-- have taken the marker with it).
-- KEYS[1] the lanes' rota, KEYS[2] wake-up marker, KEYS[3] the list of a version before
-- lanes (drained by reserve)
if redis.call('ZCARD', KEYS[1]) > 0 or redis.call('LLEN', KEYS[3]) > 0 then
  redis.call('ZADD', KEYS[2], 0, '0')
end
return 0
