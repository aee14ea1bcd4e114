-- include: _quota
-- Take one from a quota, all of its windows or none, and count one for its counters.
-- KEYS[1] the quota
-- ARGV: 1 now (ms), 2 TTL (ms, twice its longest window), 3.. the limit's items, then the counters' items
--       (_quota.lua); counters never refuse
-- Returns {1, over...} with, per counter, 1 if its count is now over its amount; or {0, refused field, ms to wait}
-- with nothing counted.
local now = tonumber(ARGV[1])
local items, at = q_items(3)
local counters = q_items(at)
local refused = q_refusal(KEYS[1], now, items)
if refused then return {0, refused[1], refused[2]} end
q_add(KEYS[1], now, items, tonumber(ARGV[2]))
local over = q_add(KEYS[1], now, counters, tonumber(ARGV[2]))
return {1, unpack(over)}
