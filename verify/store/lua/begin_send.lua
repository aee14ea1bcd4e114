-- include: _args _record _quota _send
-- Reserve a resend (or a channel switch) of a pending verification, taking the phone's quota in the same step.
-- KEYS[1] record
-- ARGV, by name (_args.lua):
--   now           now (ms)
--   cooldown      resend cooldown (ms)
--   max_sends     max sends
--   lease         send lease (ms)
--   nonce         nonce
--   quota_prefix  the phone quota's key without the phone (same hash tag as the record)
--   quota_ttl     quota TTL (ms)
--   caller        the caller ('' for an API key: any verification; for a site key, '<site key>\n<client secret hash>',
--                 which must match the record's owner and cs)
--   step          '' for a client's resend; for a fallback step (service.py), the chain's step the record must still
--                 be on ('fi', 0 when absent), with its next step due ('fd' <= now)
-- then quota items (_quota.lua)
-- Returns {outcome, record[, refused field, ms to wait]}:
--   ok | missing (or another's: a site key reaches only the verifications it started, with their client secret)
--   | not_pending | max_sends
--   | cooldown | in_flight | limited | moved (a fallback step that another worker took, or that is not due).
-- A fallback step that a limit or max sends refuses stops its chain: why is kept ('fs'), and no step is due.
local A, rest = args({
  'now', 'cooldown', 'max_sends', 'lease', 'nonce', 'quota_prefix', 'quota_ttl', 'caller', 'step'
})
v_upgrade(KEYS[1])
local r = redis.call('HMGET', KEYS[1], 's', 'p', 'o', 'cs')
if not r[1] or (A.caller ~= '' and (r[3] or '') .. '\n' .. (r[4] or '') ~= A.caller) then return {'missing', {}} end
if r[1] ~= 'pending' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
local now = tonumber(A.now)
if A.step ~= '' then
  local f = redis.call('HMGET', KEYS[1], 'fi', 'fd')
  if (f[1] or '0') ~= A.step or not f[2] or tonumber(f[2]) > now then
    return {'moved', redis.call('HGETALL', KEYS[1])}
  end
end
local function stop(why)
  if A.step ~= '' then
    redis.call('HSET', KEYS[1], 'fs', why)
    redis.call('HDEL', KEYS[1], 'fd')
  end
end
local blocked = s_blocked(KEYS[1], now, tonumber(A.cooldown), tonumber(A.max_sends), tonumber(A.lease))
if blocked == 'max_sends' then stop('max_sends') end
if blocked then return {blocked, redis.call('HGETALL', KEYS[1])} end
local quota = A.quota_prefix .. r[2]
local items = q_items(rest)
local refused = q_refusal(quota, now, items)
if refused then
  stop('rate_limited:phone')  -- the phone's quota (its limit's name: verify/quotas.py)
  return {'limited', redis.call('HGETALL', KEYS[1]), refused[1], refused[2]}
end
q_add(quota, now, items, tonumber(A.quota_ttl))
s_reserve(KEYS[1], now, A.nonce)
return {'ok', redis.call('HGETALL', KEYS[1])}
