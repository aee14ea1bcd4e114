-- The newest verification of a phone on a channel, in one round trip.
-- KEYS[1] phone index; ARGV[1] record key prefix of the same hash tag (see open.lua)
-- Returns the record's HGETALL, or an empty list.
local id = redis.call('GET', KEYS[1])
if not id then return {} end
return redis.call('HGETALL', ARGV[1] .. id)
