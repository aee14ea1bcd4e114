-- include: _args _record _hint _journal
-- Record a gateway's delivery status on the verification whose last message it is.
-- KEYS[1] record, KEYS[2] the slot's events journal (_journal.lua), then with `hint` the shard's hints and sequence
-- ARGV, by name (_args.lua):
--   provider    provider
--   message_id  provider message id
--   status      'sent' | 'delivered' | 'read' | 'failed' | 'revoked'
--   raw_status  the gateway's raw status
--   event_id    the failure event's id ('': events are off)
--   grace       how long the final copy outlives the record (ms)
--   now         now (ms)
--   hint        the slot's hash tag: hint the journal here when writing to it ('': not here; _journal.lua)
-- Any change keeps the final copy up to date (when one is kept), and with events on a failure journals its event.
-- Returns {outcome, record}: updated (from a status that was not final) | read (delivered, now read) | unchanged |
-- other_message | missing.
-- A report about an older message (a resend went out since, maybe through another gateway) changes nothing,
-- and a final status (delivered, read, failed, revoked) never goes back: reports can arrive out of order and more
-- than once. The one step past a final status is from delivered to read.
-- A failure of a pending verification whose fallback chain has a next step ('fd') makes that step due now, and
-- journals it (_journal.lua's j_step) for a worker to take at once.
local A = args({'provider', 'message_id', 'status', 'raw_status', 'event_id', 'grace', 'now', 'hint'})
j_hint_here(A.hint)
v_upgrade(KEYS[1])
local r = redis.call('HMGET', KEYS[1], 'gw', 'm', 'd')
if not r[1] then return {'missing', {}} end
if r[1] ~= A.provider or r[2] ~= A.message_id then return {'other_message', redis.call('HGETALL', KEYS[1])} end
local final = {delivered = true, read = true, failed = true, revoked = true}
local read_now = r[3] == 'delivered' and A.status == 'read'
if r[3] == A.status or (final[r[3] or ''] and not read_now) then
  return {'unchanged', redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'd', A.status, 'dr', A.raw_status)
if tonumber(A.grace) ~= 0 then j_mirror(KEYS[1], tonumber(A.grace)) end
if A.event_id ~= '' and A.status == 'failed' then
  j_event(KEYS[2], A.event_id, 'verification.failed', tonumber(A.now), KEYS[1])
end
if A.status == 'failed' then
  local f = redis.call('HMGET', KEYS[1], 's', 'fd')
  if f[1] == 'pending' and f[2] and tonumber(f[2]) > tonumber(A.now) then
    redis.call('HSET', KEYS[1], 'fd', A.now)
    j_step(KEYS[2], KEYS[1], ':now')
  end
end
return {read_now and 'read' or 'updated', redis.call('HGETALL', KEYS[1])}
