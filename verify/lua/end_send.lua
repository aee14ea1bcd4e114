-- Commit or roll back a send reserved by begin_send.lua.
-- KEYS[1] record, KEYS[2] phone index of the channel sent on, KEYS[3] phone index of the record's channel
-- ARGV: 1 nonce, 2 'sent' | 'failed', 3 now (ms), 4 challenge TTL (ms), 5 channel, 6 code hash ('' for
--       calls), 7 call number, 8 call numbers (comma-separated), 9 provider, 10 provider message id,
--       11 SMS encoding, 12 SMS parts
-- Returns {outcome, record}: sent | not_pending | kept | deleted | stale.
-- A failed first send deletes the verification, so no client ever holds an id for a code never sent.
-- A failed resend keeps the previous code valid. A successful send replaces the code and restarts the TTL.
local r = redis.call('HMGET', KEYS[1], 'sending', 'sends', 'status', 'id')
if r[1] ~= ARGV[1] then return {'stale', redis.call('HGETALL', KEYS[1])} end
redis.call('HDEL', KEYS[1], 'sending', 'sending_since')
local sends = tonumber(r[2])
if ARGV[2] == 'failed' then
  if sends == 0 then
    redis.call('DEL', KEYS[1])
    if redis.call('GET', KEYS[3]) == r[4] then redis.call('DEL', KEYS[3]) end
    return {'deleted', {}}
  end
  return {'kept', redis.call('HGETALL', KEYS[1])}
end
if r[3] ~= 'pending' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
local now = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'channel', ARGV[5], 'code_hash', ARGV[6], 'call_number', ARGV[7],
  'call_numbers', ARGV[8], 'provider', ARGV[9], 'message_id', ARGV[10], 'sms_encoding', ARGV[11],
  'sms_parts', ARGV[12], 'delivery_status', 'sent', 'sends', sends + 1, 'last_sent_at', ARGV[3],
  'expires_at', now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
if KEYS[3] ~= KEYS[2] and redis.call('GET', KEYS[3]) == r[4] then redis.call('DEL', KEYS[3]) end
redis.call('SET', KEYS[2], r[4], 'PX', ttl)
return {'sent', redis.call('HGETALL', KEYS[1])}
