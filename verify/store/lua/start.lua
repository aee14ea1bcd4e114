-- include: _args _record _quota _send
-- A start: return the phone's pending verification on a channel, or reserve a send (a new verification, or a new
-- code for the pending one once its cooldown has passed), taking the phone's quota in the same step.
-- KEYS[1] the API keys' phone index (prefix{tag}:ph:<phone>:<channel>) -> id of their newest verification
-- KEYS[2] record of a new verification (prefix{tag}:vf:<new id>)
-- KEYS[3] the phone's send quota (prefix{tag}:q:phone:<phone>)
-- KEYS[4] the site keys' verifications of the phone, any channel (prefix{tag}:sk:<phone>): ids scored by creation (ms)
-- ARGV, by name (_args.lua):
--   prefix     record key prefix of this hash tag
--   id         new id
--   now        now (ms)
--   lease      send lease (ms)
--   phone      phone
--   channel    channel
--   locale     locale
--   cooldown   resend cooldown (ms)
--   max_sends  max sends
--   nonce      nonce
--   quota_ttl  quota TTL (ms)
--   country    the phone's country (ISO)
--   owner      the site key starting it ('' for an API key)
--   app_hash   the Android app hash ('' for none)
--   otp_host   the host of the WebOTP line ('' for none)
--   cs         the hash of the client secret ('' for an API key)
--   remember   how long the site keys' set remembers a start (ms)
--   chain      a fallback chain's steps ('sms:60,voice:60'; '' for one channel: service.py)
--   ip         the client's address, which a fallback step's quotas are taken for ('' without a chain)
--   amount     a payment's amount, currency and payee: what its code approves ('' for a verification of no payment)
--   currency
--   payee
-- then quota items (_quota.lua)
-- Returns {outcome, record[, refused field, ms to wait]}:
--   created (a new verification, its first send reserved) | resend (the pending one, a send reserved)
--   | existing (the pending one, nothing reserved or taken: inside its cooldown, in flight, or out of sends)
--   | in_progress (the pending one's first send is still in flight) | limited (the phone's quota is used up).
-- Only an API key's start meets a pending verification, and only one an API key started: a site key is public, so
-- its start proves nothing about who asks and always makes a verification of its own (to be reached later with
-- the client secret its answer carries). So no start hands one caller's verification to another, or tells that
-- one exists. A site key's verifications are listed in KEYS[4] for what must find them by phone: a call that
-- confirms, a reply without a reference (service.py).
-- The existing record's key is built from `prefix`: it carries the same hash tag as KEYS, so it lives in the same
-- Redis Cluster slot. A new record lives only for the send lease until end_send.lua commits its first send.
local A, rest = args({
  'prefix', 'id', 'now', 'lease', 'phone', 'channel', 'locale', 'cooldown', 'max_sends', 'nonce', 'quota_ttl',
  'country', 'owner', 'app_hash', 'otp_host', 'cs', 'remember', 'chain', 'ip', 'amount', 'currency', 'payee'
})
local now = tonumber(A.now)
local lease = tonumber(A.lease)
local site_key = A.owner
local items = q_items(rest)
local existing = site_key == '' and redis.call('GET', KEYS[1])
if existing then
  local key = A.prefix .. existing
  v_upgrade(key)
  local r = redis.call('HMGET', key, 's', 'n', 'o')
  if r[1] == 'pending' and not r[3] then
    if tonumber(r[2]) == 0 then return {'in_progress', v_all(key)} end
    if s_blocked(key, now, tonumber(A.cooldown), tonumber(A.max_sends), lease) then
      return {'existing', v_all(key)}
    end
    local refused = q_refusal(KEYS[3], now, items)
    if refused then return {'limited', {}, refused[1], refused[2]} end
    q_add(KEYS[3], now, items, tonumber(A.quota_ttl))
    s_reserve(key, now, A.nonce)
    return {'resend', v_all(key)}
  end
end
local refused = q_refusal(KEYS[3], now, items)
if refused then return {'limited', {}, refused[1], refused[2]} end
q_add(KEYS[3], now, items, tonumber(A.quota_ttl))
-- Attempts ('a') are counted from none when a wrong code first comes (complete.lua).
redis.call('HSET', KEYS[2], 'p', A.phone, 'cc', A.country, 'ch', A.channel, 's', 'pending', 'n', 0, 'c', A.now,
  'ls', 0, 'e', now + lease)
-- Only when set (_record.lua): most verifications have none.
for argument, field in pairs({locale = 'l', owner = 'o', app_hash = 'ah', otp_host = 'oh', cs = 'cs', chain = 'fc',
                              ip = 'ip', amount = 'pa', currency = 'pc', payee = 'pp'}) do
  if A[argument] ~= '' then redis.call('HSET', KEYS[2], field, A[argument]) end
end
s_reserve(KEYS[2], now, A.nonce)
redis.call('PEXPIRE', KEYS[2], lease)
if site_key == '' then
  redis.call('SET', KEYS[1], A.id, 'PX', lease)
else
  -- Bounded by the phone's quota, which every start here took; what is older than a challenge's life goes.
  local memory = tonumber(A.remember)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - memory)
  redis.call('ZADD', KEYS[4], now, A.id)
  redis.call('PEXPIRE', KEYS[4], memory)
end
return {'created', v_all(KEYS[2])}
