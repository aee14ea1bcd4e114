-- include: _args _record _journal
-- Cancel a verification that is not approved. Canceling twice is harmless.
-- KEYS[1] record
-- ARGV, by name (_args.lua):
--   grace  how long the final copy outlives the record (ms; _journal.lua; 0: none), so that its expiry is not reported
-- Returns {outcome, record}: canceled | not_pending | missing.
local A = args({'grace'})
v_upgrade(KEYS[1])
local status = redis.call('HGET', KEYS[1], 's')
if not status then return {'missing', {}} end
if status == 'approved' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
redis.call('HSET', KEYS[1], 's', 'canceled')
redis.call('HDEL', KEYS[1], 'h', 'x', 'xs')
if tonumber(A.grace) ~= 0 then j_mirror(KEYS[1], tonumber(A.grace)) end
return {'canceled', redis.call('HGETALL', KEYS[1])}
