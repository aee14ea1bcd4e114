-- include: _args _record _quota _hint _journal
-- Commit or roll back a send reserved by start.lua or begin_send.lua.
-- KEYS[1] record, KEYS[2] phone index of the channel sent on, KEYS[3] phone index of the record's channel,
-- KEYS[4] the slot's events journal (_journal.lua), then with `hint` the shard's hints and sequence
-- ARGV, by name (_args.lua):
--   nonce         nonce
--   result        'sent' | 'failed'
--   now           now (ms)
--   ttl           challenge TTL (ms)
--   quota_prefix  the phone quota's key without the phone
--   taken_at      when the quota was taken (ms)
--   grace         how long the final copy outlives the record (ms; _journal.lua)
--   hint          the slot's hash tag: hint the journal here when writing to it ('': not here; _journal.lua)
-- then the quota items taken (_quota.lua), then the fields to store as field, value pairs ('ch', 'h', 'gw', ...; an
-- empty value removes its field: _record.lua): for 'sent', the send's; for 'failed', what a fallback chain records of
-- a step that sent nothing (its attempts, why it stopped), on a verification that is kept
-- A send that leaves a fallback chain's next step due ('fd') journals that step (_journal.lua's j_step).
-- A send watches the verification's expiry (and what a superseded one finally was is kept).
-- Returns {outcome, record[, superseded id]}: sent | not_pending | kept | deleted | stale.
-- A failed send gives the phone's quota back. A failed first send deletes the verification, so no client ever
-- holds an id for a code never sent; a failed resend keeps the previous code valid. A successful send replaces
-- the code and restarts the TTL. A send that moved the verification to another channel cancels the pending
-- verification that channel had (superseded): a phone has at most one pending verification per channel among the
-- API keys'. A site key's verification (owner set) is in no phone index (start.lua): its sends touch none.
local A, rest = args({'nonce', 'result', 'now', 'ttl', 'quota_prefix', 'taken_at', 'grace', 'hint'})
j_hint_here(A.hint)
v_upgrade(KEYS[1])
local r = redis.call('HMGET', KEYS[1], 'x', 'n', 's', 'p', 'o')
local id = v_id(KEYS[1])
local indexed = not r[5]
if r[1] ~= A.nonce then return {'stale', redis.call('HGETALL', KEYS[1])} end
redis.call('HDEL', KEYS[1], 'x', 'xs')
local sends = tonumber(r[2])
local grace = tonumber(A.grace)
local items, at = q_items(rest)
if A.result == 'failed' then
  q_give(A.quota_prefix .. r[4], tonumber(A.taken_at), items)
  if sends == 0 then
    redis.call('DEL', KEYS[1])
    if indexed and redis.call('GET', KEYS[3]) == id then redis.call('DEL', KEYS[3]) end
    return {'deleted', {}}
  end
end
local fields, empty, next_step = {}, {}, false
for i = at, #ARGV, 2 do
  next_step = next_step or (ARGV[i] == 'fd' and ARGV[i + 1] ~= '')  -- a chain's send that leaves a step due
  if ARGV[i + 1] == '' then
    empty[#empty + 1] = ARGV[i]
  else
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
  end
end
if A.result == 'failed' then
  if r[3] == 'pending' and #empty > 0 then redis.call('HDEL', KEYS[1], unpack(empty)) end
  if r[3] == 'pending' and #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
  return {'kept', redis.call('HGETALL', KEYS[1])}
end
if r[3] ~= 'pending' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
local now = tonumber(A.now)
local ttl = tonumber(A.ttl)
redis.call('HSET', KEYS[1], 'd', 'sent', 'n', sends + 1, 'ls', A.now, 'e', now + ttl, unpack(fields))
if #empty > 0 then redis.call('HDEL', KEYS[1], unpack(empty)) end
redis.call('PEXPIRE', KEYS[1], ttl)
local superseded = ''
if indexed and KEYS[3] ~= KEYS[2] then
  if redis.call('GET', KEYS[3]) == id then redis.call('DEL', KEYS[3]) end
  local other = redis.call('GET', KEYS[2])
  if other and other ~= id then
    local key = string.sub(KEYS[1], 1, #KEYS[1] - #id) .. other
    v_upgrade(key)
    if redis.call('HGET', key, 's') == 'pending' then
      redis.call('HSET', key, 's', 'canceled')
      redis.call('HDEL', key, 'h', 'x', 'xs')
      if grace ~= 0 then j_mirror(key, grace) end
      superseded = other
    end
  end
end
if indexed then redis.call('SET', KEYS[2], id, 'PX', ttl) end
if grace ~= 0 then
  if grace > 0 then j_mirror(KEYS[1], grace) end  -- a status kept alone (grace < 0) would be 'pending': the watch's
  j_watch(KEYS[4], id, now + ttl, KEYS[1], grace)
  if next_step then j_step(KEYS[4], KEYS[1], '') end
end
return {'sent', redis.call('HGETALL', KEYS[1]), superseded}
