-- Count one more consecutive failure of a gateway; open its circuit breaker at the threshold.
-- KEYS[1] breaker of one provider
-- ARGV: 1 now (ms), 2 failures that open the breaker, 3 cooldown (ms)
-- Returns the time (ms) until which the breaker is open, or 0 while it is closed.
-- After the cooldown one send is tried again ("half open"): its failure re-opens the breaker at once, because
-- the count is still at the threshold; a success deletes the key (store.breaker_success).
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local now = tonumber(ARGV[1])
local cooldown = tonumber(ARGV[3])
-- Forget a streak that stopped long ago, so rare failures weeks apart never add up.
redis.call('PEXPIRE', KEYS[1], cooldown + 3600000)
if failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'open_until', now + cooldown)
  return now + cooldown
end
return 0
