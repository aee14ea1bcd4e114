-- Library (included by hint.lua and by _journal.lua's users): give a slot's journal a hint, the pointer the sweep
-- follows to it. The slot's hint takes the shard's next sequence number. A number is never given twice, so a sweep
-- that read a hint and forgets it (unhint.lua) only if it is still that number cannot take a later hint for the one
-- it read, even once the hint was forgotten and given again meanwhile (a count that restarts from 1 could come back
-- to the value a slow sweep read). `hints` is the sorted set hash tag -> the number of its last hint, `seq` the
-- shard's counter. Returns the number given.
local function h_hint(hints, seq, tag)
  local n = redis.call('INCR', seq)
  redis.call('ZADD', hints, n, tag)
  return n
end
