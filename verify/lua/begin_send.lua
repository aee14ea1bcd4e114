-- Reserve the right to send a code (or hand out a call number) for a pending verification.
-- KEYS[1] record
-- ARGV: 1 now (ms), 2 resend cooldown (ms), 3 max sends, 4 send lease (ms), 5 nonce
-- Returns {outcome, record}: ok | missing | not_pending | max_sends | cooldown | in_flight.
-- The reservation (nonce) keeps a concurrent resend out while a gateway is being called; it lapses after
-- the lease, so a worker that died mid-send does not block the verification.
local r = redis.call('HMGET', KEYS[1], 'status', 'sends', 'last_sent_at', 'sending', 'sending_since')
if not r[1] then return {'missing', {}} end
if r[1] ~= 'pending' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
local now = tonumber(ARGV[1])
local sends = tonumber(r[2])
if sends >= tonumber(ARGV[3]) then return {'max_sends', redis.call('HGETALL', KEYS[1])} end
if r[4] and now - tonumber(r[5]) < tonumber(ARGV[4]) then
  return {'in_flight', redis.call('HGETALL', KEYS[1])}
end
if sends > 0 and now < tonumber(r[3]) + tonumber(ARGV[2]) then
  return {'cooldown', redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'sending', ARGV[5], 'sending_since', ARGV[1])
return {'ok', redis.call('HGETALL', KEYS[1])}
