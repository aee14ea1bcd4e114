-- Put an event on the outbox unless it is there already or was delivered: moving a journal entry may be repeated
-- (a worker that died after moving it, before removing it from the journal), and the event goes out once.
-- KEYS[1] outbox schedule (sorted set: event id -> due time in ms), KEYS[2] its data hash, KEYS[3] delivered ids
-- (sorted set: id -> when delivered)
-- ARGV: 1 event id, 2 due (ms), 3 the envelope (JSON)
-- Returns 1 when queued, 0 when it was queued or delivered before.
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
