-- include: _args
-- Forget the hint that a slot's journal has entries, unless another was given since the sweep read it (hint.lua:
-- each hint is a number never given before).
-- KEYS[1] the hints (sorted set: hash tag -> the number of its last hint)
-- ARGV, by name (_args.lua):
--   tag    the tag
--   seen   the number the sweep saw
-- Returns 1 when forgotten.
local A = args({'tag', 'seen'})
if redis.call('ZSCORE', KEYS[1], A.tag) == A.seen then
  redis.call('ZREM', KEYS[1], A.tag)
  return 1
end
return 0
