-- include: _journal
-- Record a gateway's delivery status on the verification whose last message it is.
-- KEYS[1] record, KEYS[2] the slot's events journal (_journal.lua)
-- ARGV: 1 provider, 2 provider message id, 3 status ('sent' | 'delivered' | 'failed'), 4 the gateway's raw status,
--       5 the failure event's id ('': events are off), 6 how long the final copy outlives the record (ms), 7 now
-- Any change keeps the final copy up to date (when one is kept), and with events on a failure journals its event.
-- Returns {outcome, record}: updated | unchanged | other_message | missing.
-- A report about an older message (a resend went out since, maybe through another gateway) changes nothing,
-- and a final status (delivered, failed) never goes back: reports can arrive out of order and more than once.
local r = redis.call('HMGET', KEYS[1], 'provider', 'message_id', 'delivery_status')
if not r[1] then return {'missing', {}} end
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return {'other_message', redis.call('HGETALL', KEYS[1])} end
if r[3] == ARGV[3] or r[3] == 'delivered' or r[3] == 'failed' then
  return {'unchanged', redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'delivery_status', ARGV[3], 'delivery_raw', ARGV[4])
if tonumber(ARGV[6]) ~= 0 then j_mirror(KEYS[1], tonumber(ARGV[6])) end
if ARGV[5] ~= '' and ARGV[3] == 'failed' then
  j_event(KEYS[2], ARGV[5], 'verification.failed', tonumber(ARGV[7]), KEYS[1])
end
return {'updated', redis.call('HGETALL', KEYS[1])}
