-- include: _args
-- Count one more consecutive failure of a gateway; open its circuit breaker at the threshold.
-- KEYS[1] breaker of one provider
-- ARGV, by name (_args.lua):
--   now        now (ms)
--   threshold  failures that open the breaker
--   cooldown   cooldown (ms)
-- Returns the time (ms) until which the breaker is open, or 0 while it is closed.
-- After the cooldown one send is tried again ("half open"): its failure re-opens the breaker at once, because
-- the count is still at the threshold; a success deletes the key (Batch.breaker_reset, verify/store/breaker.py).
local A = args({'now', 'threshold', 'cooldown'})
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local now = tonumber(A.now)
local cooldown = tonumber(A.cooldown)
-- Forget a streak that stopped long ago, so rare failures weeks apart never add up.
redis.call('PEXPIRE', KEYS[1], cooldown + 3600000)
if failures >= tonumber(A.threshold) then
  redis.call('HSET', KEYS[1], 'open_until', now + cooldown)
  return now + cooldown
end
return 0
