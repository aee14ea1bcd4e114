-- Cancel a verification that is not approved. Canceling twice is harmless.
-- KEYS[1] record
-- Returns {outcome, record}: canceled | not_pending | missing.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', {}} end
if status == 'approved' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
redis.call('HSET', KEYS[1], 'status', 'canceled')
redis.call('HDEL', KEYS[1], 'code_hash', 'sending', 'sending_since')
return {'canceled', redis.call('HGETALL', KEYS[1])}
