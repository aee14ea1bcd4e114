-- include: _journal
-- Cancel a verification that is not approved. Canceling twice is harmless.
-- KEYS[1] record
-- ARGV: 1 how long the final copy outlives the record (ms; _journal.lua; 0: none), so that its expiry is not
--       reported
-- Returns {outcome, record}: canceled | not_pending | missing.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', {}} end
if status == 'approved' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
redis.call('HSET', KEYS[1], 'status', 'canceled')
redis.call('HDEL', KEYS[1], 'code_hash', 'sending', 'sending_since')
if tonumber(ARGV[1]) ~= 0 then j_mirror(KEYS[1], tonumber(ARGV[1])) end
return {'canceled', redis.call('HGETALL', KEYS[1])}
