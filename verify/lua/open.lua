-- Find the pending verification of a phone on a channel, or create one.
-- KEYS[1] phone index  (prefix{tag}:ph:<phone>:<channel>)  -> id of the newest verification
-- KEYS[2] record of the new verification (prefix{tag}:vf:<new id>)
-- ARGV: 1 record key prefix of this hash tag, 2 new id, 3 now (ms), 4 send lease (ms),
--       5 phone, 6 channel, 7 locale
-- The existing record's key is built from ARGV[1]: it carries the same hash tag as KEYS, so it lives in
-- the same Cluster slot.
-- A new record lives only for the send lease until end_send.lua commits its first send; a worker that
-- dies mid-send so leaves nothing behind for longer than the lease.
local existing = redis.call('GET', KEYS[1])
if existing then
  local key = ARGV[1] .. existing
  if redis.call('HGET', key, 'status') == 'pending' then
    return {'existing', redis.call('HGETALL', key)}
  end
end
local now = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], 'id', ARGV[2], 'phone', ARGV[5], 'channel', ARGV[6], 'locale', ARGV[7],
  'status', 'pending', 'attempts', 0, 'sends', 0, 'created_at', ARGV[3], 'last_sent_at', 0,
  'expires_at', now + lease)
redis.call('PEXPIRE', KEYS[2], lease)
redis.call('SET', KEYS[1], ARGV[2], 'PX', lease)
return {'created', redis.call('HGETALL', KEYS[2])}
