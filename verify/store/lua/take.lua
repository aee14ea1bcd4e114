-- include: _args _quota
-- Take one from a quota, all of its windows or none, and count one for its counters.
-- KEYS[1] the quota
-- ARGV, by name (_args.lua):
--   now  now (ms)
--   ttl  TTL (ms, twice its longest window)
-- then the limit's items, then the counters' items (_quota.lua); counters never refuse
-- Returns {1, over...} with, per counter, 1 if its count is now over its amount; or {0, refused field, ms to wait}
-- with nothing counted.
local A, rest = args({'now', 'ttl'})
local now = tonumber(A.now)
local items, at = q_items(rest)
local counters = q_items(at)
local refused = q_refusal(KEYS[1], now, items)
if refused then return {0, refused[1], refused[2]} end
q_add(KEYS[1], now, items, tonumber(A.ttl))
local over = q_add(KEYS[1], now, counters, tonumber(A.ttl))
return {1, unpack(over)}
