-- include: _args _record
-- The verifications that something arriving from a phone may be about (a call that confirms, a reply naming no
-- message), in one round trip: the API keys' newest one on a channel, and the site keys' started since a time.
-- KEYS[1] the API keys' phone index of the channel, KEYS[2] the site keys' verifications of the phone (start.lua)
-- ARGV, by name (_args.lua):
--   prefix  record key prefix of the same hash tag
--   since   since (ms)
-- Returns {the API keys' record (_record.lua: v_all; or empty), {site-key record, ...}}: records Redis still holds, whatever
-- their status and channel, oldest first.
local A = args({'prefix', 'since'})
local prefix = A.prefix
local api = {}
local id = redis.call('GET', KEYS[1])
if id then api = v_all(prefix .. id) end
local site = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], A.since, '+inf')) do
  local record = v_all(prefix .. member)
  if #record > 0 then site[#site + 1] = record end
end
return {api, site}
