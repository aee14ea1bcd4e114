-- Approve a pending verification, exactly once: by a code check, an SMS reply or a call.
-- KEYS[1] record
-- ARGV: 1 via ('code' | 'sms_reply' | 'call'), 2 max attempts, 3 now (ms), 4 how long an approved
--       record stays readable (ms), 5.. candidate code hashes (HMACs of the submitted code under every key)
-- Returns {outcome, record}: approved | wrong | no_match | max_attempts | not_pending | wrong_channel |
-- no_code | missing.
-- Only a wrong *checked* code costs an attempt: a reply without the code is just an unrelated SMS.
-- The hashes are compared inside this script so that counting the attempt, comparing, and approving are
-- one atomic step: of any number of concurrent correct checks exactly one approves. Lua strings are
-- interned, so == compares two pointers and its time says nothing about the stored hash.
local r = redis.call('HMGET', KEYS[1], 'status', 'channel', 'code_hash')
if not r[1] then return {'missing', {}} end
if r[1] == 'max_attempts_reached' then return {'max_attempts', redis.call('HGETALL', KEYS[1])} end
if r[1] ~= 'pending' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
local via = ARGV[1]
if via == 'call' then
  if r[2] ~= 'call' then return {'wrong_channel', redis.call('HGETALL', KEYS[1])} end
else
  if r[2] ~= 'sms' then return {'wrong_channel', redis.call('HGETALL', KEYS[1])} end
  if not r[3] or r[3] == '' then return {'no_code', redis.call('HGETALL', KEYS[1])} end
  local matched = false
  for i = 5, #ARGV do
    if ARGV[i] == r[3] then matched = true end
  end
  if not matched then
    if via ~= 'code' then return {'no_match', redis.call('HGETALL', KEYS[1])} end
    local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
    if attempts >= tonumber(ARGV[2]) then
      redis.call('HSET', KEYS[1], 'status', 'max_attempts_reached')
      redis.call('HDEL', KEYS[1], 'code_hash')
    end
    return {'wrong', redis.call('HGETALL', KEYS[1])}
  end
end
redis.call('HSET', KEYS[1], 'status', 'approved', 'completed_via', via, 'verified_at', ARGV[3])
redis.call('HDEL', KEYS[1], 'code_hash')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'approved', redis.call('HGETALL', KEYS[1])}
