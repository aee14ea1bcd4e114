-- include: _args
-- Put an event on the outbox unless it is there already or was delivered: moving a journal entry may be repeated
-- (a worker that died after moving it, before removing it from the journal), and the event goes out once.
-- KEYS[1] outbox schedule (sorted set: event id -> due time in ms), KEYS[2] its data hash, KEYS[3] delivered ids
-- (sorted set: id -> when delivered)
-- ARGV, by name (_args.lua):
--   event_id  event id
--   due       due (ms)
--   envelope  the envelope (JSON)
-- Returns 1 when queued, 0 when it was queued or delivered before.
local A = args({'event_id', 'due', 'envelope'})
if redis.call('ZSCORE', KEYS[3], A.event_id) then return 0 end
if redis.call('HSETNX', KEYS[2], A.event_id, A.envelope) == 0 then return 0 end
redis.call('ZADD', KEYS[1], A.due, A.event_id)
return 1
