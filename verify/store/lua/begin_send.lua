-- include: _quota _send
-- Reserve a resend (or a channel switch) of a pending verification, taking the phone's quota in the same step.
-- KEYS[1] record
-- ARGV: 1 now (ms), 2 resend cooldown (ms), 3 max sends, 4 send lease (ms), 5 nonce,
--       6 the phone quota's key without the phone (same hash tag as the record), 7 quota TTL (ms),
--       8 the caller ('' for an API key: any verification; for a site key, '<site key>\n<client secret hash>',
--       which must match the record's owner and cs), 9.. quota items (_quota.lua)
-- Returns {outcome, record[, refused field, ms to wait]}:
--   ok | missing (or another's: a site key reaches only the verifications it started, with their client secret)
--   | not_pending | max_sends
--   | cooldown | in_flight | limited.
local r = redis.call('HMGET', KEYS[1], 'status', 'phone', 'owner', 'cs')
if not r[1] or (ARGV[8] ~= '' and (r[3] or '') .. '\n' .. (r[4] or '') ~= ARGV[8]) then return {'missing', {}} end
if r[1] ~= 'pending' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
local now = tonumber(ARGV[1])
local blocked = s_blocked(KEYS[1], now, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
if blocked then return {blocked, redis.call('HGETALL', KEYS[1])} end
local quota = ARGV[6] .. r[2]
local items = q_items(9)
local refused = q_refusal(quota, now, items)
if refused then return {'limited', redis.call('HGETALL', KEYS[1]), refused[1], refused[2]} end
q_add(quota, now, items, tonumber(ARGV[7]))
s_reserve(KEYS[1], now, ARGV[5])
return {'ok', redis.call('HGETALL', KEYS[1])}
