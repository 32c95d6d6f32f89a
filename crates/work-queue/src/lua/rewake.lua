-- Put the wake-up marker back if work is ready (a waiter gave up its wait mid-way and may
-- have taken the marker with it).
-- KEYS[1] ready, KEYS[2] wake-up marker
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('ZADD', KEYS[2], 0, '0')
end
return 0
