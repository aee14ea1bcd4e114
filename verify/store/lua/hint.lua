-- include: _args
-- Say that a slot's journal may get an entry: the slot's hint takes the shard's next sequence number. A number is
-- never given twice, so a sweep that read a hint and forgets it (unhint.lua) only if it is still that number
-- cannot take a later hint for the one it read, even once the hint was forgotten and given again meanwhile
-- (a count that restarts from 1 could come back to the value a slow sweep read).
-- KEYS[1] the hints (sorted set: hash tag -> the number of its last hint), KEYS[2] the shard's sequence (a counter)
-- ARGV, by name (_args.lua):
--   tag  the hash tag of the slot
-- Returns the number given.
local A = args({'tag'})
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], n, A.tag)
return n
