-- include: _args
-- Remember which verification a gateway's message belongs to, for its delivery reports and replies. The ids live
-- in hashes, each window's spread over a fixed number of buckets (verify/store/messages.py), not in a key each:
-- a key of its own cost a message about 180 bytes for two days, most of them Redis's own bookkeeping of a key.
-- KEYS[1] this window's bucket of the message id (prefix msgs:{<gateway>:<bucket>}:<window>)
-- ARGV, by name (_args.lua):
--   message_id  the gateway's message id
--   id          our verification id
--   ttl         how long the bucket lives from now (ms): the window's end, and as many windows more as a message is
--               remembered
-- Returns 1.
local A = args({'message_id', 'id', 'ttl'})
redis.call('HSET', KEYS[1], A.message_id, A.id)
redis.call('PEXPIRE', KEYS[1], A.ttl)
return 1
