-- include: _args
-- An event reached the receiver: off the outbox, and remembered as delivered for as long as a stale journal entry
-- could bring it back.
-- KEYS[1] outbox schedule, KEYS[2] its data hash, KEYS[3] delivered ids (sorted set: id -> when delivered)
-- ARGV, by name (_args.lua):
--   event_id  event id
--   now       now (ms)
--   remember  how long a delivered id is remembered (ms)
local A = args({'event_id', 'now', 'remember'})
redis.call('ZREM', KEYS[1], A.event_id)
redis.call('HDEL', KEYS[2], A.event_id)
redis.call('ZADD', KEYS[3], A.now, A.event_id)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(A.now) - tonumber(A.remember))
return 1
