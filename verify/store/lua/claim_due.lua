-- include: _args
-- Claim the entries of a schedule that are due: each is pushed out by the lease, so another worker does not
-- take it meanwhile; the caller removes it when done or reschedules it. A worker that dies lets the lease
-- run out and the entry is taken again (at least once).
-- KEYS[1] schedule (sorted set: member -> due time in ms), KEYS[2] hash of the members' data
-- ARGV, by name (_args.lua):
--   now    now (ms)
--   lease  lease (ms)
--   limit  how many at most
-- Returns a flat list: member, data, member, data, ...
local A = args({'now', 'lease', 'limit'})
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', A.now, 'LIMIT', 0, tonumber(A.limit))
local out = {}
for _, member in ipairs(members) do
  local data = redis.call('HGET', KEYS[2], member)
  if data then
    redis.call('ZADD', KEYS[1], tonumber(A.now) + tonumber(A.lease), member)
    out[#out + 1] = member
    out[#out + 1] = data
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return out
