-- include: _quota _send
-- A start: return the phone's pending verification on a channel, or reserve a send (a new verification, or a new
-- code for the pending one once its cooldown has passed), taking the phone's quota in the same step.
-- KEYS[1] the API keys' phone index (prefix{tag}:ph:<phone>:<channel>) -> id of their newest verification
-- KEYS[2] record of a new verification (prefix{tag}:vf:<new id>)
-- KEYS[3] the phone's send quota (prefix{tag}:q:phone:<phone>)
-- KEYS[4] the site keys' verifications of the phone, any channel (prefix{tag}:sk:<phone>): ids scored by creation (ms)
-- ARGV: 1 record key prefix of this hash tag, 2 new id, 3 now (ms), 4 send lease (ms), 5 phone, 6 channel,
--       7 locale, 8 resend cooldown (ms), 9 max sends, 10 nonce, 11 quota TTL (ms), 12 the phone's country (ISO),
--       13 owner (the site key starting it; '' for an API key), 14 the Android app hash ('' for none), 15 the host
--       of the WebOTP line ('' for none), 16 the hash of the client secret ('' for an API key), 17 how long the
--       site keys' set remembers a start (ms), 18.. quota items (_quota.lua)
-- Returns {outcome, record[, refused field, ms to wait]}:
--   created (a new verification, its first send reserved) | resend (the pending one, a send reserved)
--   | existing (the pending one, nothing reserved or taken: inside its cooldown, in flight, or out of sends)
--   | in_progress (the pending one's first send is still in flight) | limited (the phone's quota is used up).
-- Only an API key's start meets a pending verification, and only one an API key started: a site key is public, so
-- its start proves nothing about who asks and always makes a verification of its own (to be reached later with
-- the client secret its answer carries). So no start hands one caller's verification to another, or tells that
-- one exists. A site key's verifications are listed in KEYS[4] for what must find them by phone: a call that
-- confirms, a reply without a reference (service.py).
-- The existing record's key is built from ARGV[1]: it carries the same hash tag as KEYS, so it lives in the same
-- Redis Cluster slot. A new record lives only for the send lease until end_send.lua commits its first send.
local now = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local site_key = ARGV[13]
local items = q_items(18)
local existing = site_key == '' and redis.call('GET', KEYS[1])
if existing then
  local key = ARGV[1] .. existing
  local r = redis.call('HMGET', key, 'status', 'sends', 'owner')
  if r[1] == 'pending' and not r[3] then
    if tonumber(r[2]) == 0 then return {'in_progress', redis.call('HGETALL', key)} end
    if s_blocked(key, now, tonumber(ARGV[8]), tonumber(ARGV[9]), lease) then
      return {'existing', redis.call('HGETALL', key)}
    end
    local refused = q_refusal(KEYS[3], now, items)
    if refused then return {'limited', {}, refused[1], refused[2]} end
    q_add(KEYS[3], now, items, tonumber(ARGV[11]))
    s_reserve(key, now, ARGV[10])
    return {'resend', redis.call('HGETALL', key)}
  end
end
local refused = q_refusal(KEYS[3], now, items)
if refused then return {'limited', {}, refused[1], refused[2]} end
q_add(KEYS[3], now, items, tonumber(ARGV[11]))
redis.call('HSET', KEYS[2], 'id', ARGV[2], 'phone', ARGV[5], 'country', ARGV[12], 'channel', ARGV[6],
  'locale', ARGV[7], 'status', 'pending', 'attempts', 0, 'sends', 0, 'created_at', ARGV[3], 'last_sent_at', 0,
  'expires_at', now + lease)
for i, field in ipairs({'owner', 'app_hash', 'otp_host', 'cs'}) do  -- only when set: most verifications have none
  if ARGV[12 + i] ~= '' then redis.call('HSET', KEYS[2], field, ARGV[12 + i]) end
end
s_reserve(KEYS[2], now, ARGV[10])
redis.call('PEXPIRE', KEYS[2], lease)
if site_key == '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', lease)
else
  -- Bounded by the phone's quota, which every start here took; what is older than a challenge's life goes.
  local memory = tonumber(ARGV[17])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - memory)
  redis.call('ZADD', KEYS[4], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[4], memory)
end
return {'created', redis.call('HGETALL', KEYS[2])}
