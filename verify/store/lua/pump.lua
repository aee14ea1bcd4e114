-- include: _args
-- The SMS-pumping guard's statistics for one country: SMS verifications started and approved per minute, in a
-- ring of 60 one-minute buckets (field = minute mod 60, value "<minute>:<started>:<approved>"), so the key never
-- holds more than 60 buckets whatever the traffic.
-- A country's statistics are split in shards (by the phone's hash tag) so that no one key is written by every start;
-- a read sums the shards.
-- KEYS[1] one shard of the country's statistics
-- ARGV, by name (_args.lua):
--   what  'started' | 'approved' | 'read'
--   now   now (ms)
-- Returns 1 for 'started' and 'approved'; for 'read', {started, approved} over the last hour.
local A = args({'what', 'now'})
local minute = math.floor(tonumber(A.now) / 60000)
if A.what ~= 'read' then
  local field = tostring(minute % 60)
  local raw = redis.call('HGET', KEYS[1], field)
  local started, approved = 0, 0
  if raw then
    local m, s, a = string.match(raw, '^(%d+):(%d+):(%d+)$')
    if tonumber(m) == minute then started, approved = tonumber(s), tonumber(a) end
  end
  if A.what == 'started' then started = started + 1 else approved = approved + 1 end
  redis.call('HSET', KEYS[1], field, minute .. ':' .. started .. ':' .. approved)
  redis.call('PEXPIRE', KEYS[1], 3660000)
  return 1
end
local started, approved = 0, 0
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local m, s, a = string.match(flat[i + 1], '^(%d+):(%d+):(%d+)$')
  if minute - tonumber(m) < 60 then
    started, approved = started + tonumber(s), approved + tonumber(a)
  end
end
return {started, approved}
