-- The SMS-pumping guard's statistics for one country: SMS verifications started and approved per minute, in a
-- ring of 60 one-minute buckets (field = minute mod 60, value "<minute>:<started>:<approved>"), so the key never
-- holds more than 60 buckets whatever the traffic.
-- KEYS[1] the country's statistics
-- ARGV: 1 'started' | 'approved' | 'read', 2 now (ms); for 'read': 3 threshold (share of unapproved starts),
--       4 least starts, 5 how often a warning may be logged (ms)
-- Returns 1 for 'started' and 'approved'. For 'read': {pumping (0/1), warn (0/1), started, approved} over the last
-- hour; warn is 1 at most once per ARGV[5] while pumping, so that the warning is logged once, not per request.
local minute = math.floor(tonumber(ARGV[2]) / 60000)
if ARGV[1] ~= 'read' then
  local field = tostring(minute % 60)
  local raw = redis.call('HGET', KEYS[1], field)
  local started, approved = 0, 0
  if raw then
    local m, s, a = string.match(raw, '^(%d+):(%d+):(%d+)$')
    if tonumber(m) == minute then started, approved = tonumber(s), tonumber(a) end
  end
  if ARGV[1] == 'started' then started = started + 1 else approved = approved + 1 end
  redis.call('HSET', KEYS[1], field, minute .. ':' .. started .. ':' .. approved)
  redis.call('PEXPIRE', KEYS[1], 3660000)
  return 1
end
local started, approved = 0, 0
local warned = 0
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  if flat[i] == 'warned' then
    warned = tonumber(flat[i + 1])
  else
    local m, s, a = string.match(flat[i + 1], '^(%d+):(%d+):(%d+)$')
    if minute - tonumber(m) < 60 then
      started, approved = started + tonumber(s), approved + tonumber(a)
    end
  end
end
if started < tonumber(ARGV[4]) or (started - approved) <= tonumber(ARGV[3]) * started then
  return {0, 0, started, approved}
end
local now = tonumber(ARGV[2])
if now - warned < tonumber(ARGV[5]) then return {1, 0, started, approved} end
redis.call('HSET', KEYS[1], 'warned', now)
return {1, 1, started, approved}
