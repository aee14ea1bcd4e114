-- include: _args _record
-- The newest verification of a phone on a channel, in one round trip.
-- KEYS[1] phone index
-- ARGV, by name (_args.lua):
--   prefix  record key prefix of the same hash tag
-- Returns the record (_record.lua: v_all), or an empty list.
local A = args({'prefix'})
local id = redis.call('GET', KEYS[1])
if not id then return {} end
return v_all(A.prefix .. id)
