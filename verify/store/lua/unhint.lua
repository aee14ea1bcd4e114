-- Forget the hint that a slot's journal has entries, unless another was given since the sweep read it.
-- KEYS[1] the hints (sorted set: hash tag -> how many hints were given)
-- ARGV: 1 the tag, 2 the count the sweep saw
-- Returns 1 when forgotten.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
