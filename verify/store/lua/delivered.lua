-- An event reached the receiver: off the outbox, and remembered as delivered for as long as a stale journal entry
-- could bring it back.
-- KEYS[1] outbox schedule, KEYS[2] its data hash, KEYS[3] delivered ids (sorted set: id -> when delivered)
-- ARGV: 1 event id, 2 now (ms), 3 how long a delivered id is remembered (ms)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
return 1
