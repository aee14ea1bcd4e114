-- include: _args _record _quota _hint _journal
-- Approve a pending verification, exactly once: by a code check, an SMS reply or a call.
-- KEYS[1] record, KEYS[2] the slot's events journal (_journal.lua), KEYS[3] (with a gate, below) the gate's quota,
-- then with `hint` the shard's hints and sequence
-- ARGV, by name (_args.lua):
--   via           'code' | 'sms_reply' | 'call'
--   max_attempts  max attempts
--   now           now (ms)
--   keep          how long an approved record stays readable (ms)
--   quota_prefix  the wrong-code quota's key without the phone (same hash tag as the record)
--   quota_ttl     its TTL (ms)
--   event_id      the approval event's id ('': events are off)
--   grace         how long the final copy outlives the record (ms)
--   caller        the caller ('' for an API key or a gateway: any verification; for a site key, '<site key>\n<client
--                 secret hash>', which must match the record's owner and cs)
--   submitted     how many codes were submitted (a reply may carry a few)
--   gate_ttl      the gate quota's TTL (ms)
--   hint          the slot's hash tag: hint the journal here when writing to it ('': not here; _journal.lua)
-- then the gate's items (_quota.lua; none: no gate), then the wrong-code quota's items, then the candidate code hashes
-- (HMACs of each submitted code under every key)
-- The gate is a quota taken first, whatever comes after, and never given back: the client IP's check quota, on one
-- server, where a script may reach a key of another slot (on a cluster it is taken in a round trip of its own before).
-- It refuses with {'limited', {}, refused field, ms to wait}, having changed nothing.
-- A change keeps the final copy up to date (when one is kept: `grace` ~= 0), and with events on an approval
-- journals its event.
-- Returns {outcome, record[, refused field, ms to wait]}: approved | wrong | max_attempts
-- | not_pending | wrong_channel | no_code | missing | locked.
-- Each wrong code, checked or replied, costs an attempt and counts against the phone's wrong-code quota (a reply
-- without any code-like number never gets here: it is just an unrelated SMS). While that quota is used up every
-- check and reply of the phone is refused (locked), the right code included. Testing the quota, counting the attempt, comparing and approving are one atomic step:
-- of any number of concurrent checks exactly one approves and no more wrong codes are judged than the quota
-- allows. Lua strings are interned, so == compares two pointers and its time says nothing about the stored hash.
-- The wrong-code lock counts *consecutive* failures of a phone (NIST SP 800-63B 5.2.2): an approval clears them,
-- and each item {field, amount, window} of the limit locks the phone once `amount` failures came with no quiet
-- `window` between two of them, until `window` has passed since the last one. Its hash holds per item
-- "f<field>" = "<failures>:<last failure, ms>" (fields of its own: an older sliding-window quota's expire alone).
local A, rest = args({
  'via', 'max_attempts', 'now', 'keep', 'quota_prefix', 'quota_ttl', 'event_id', 'grace', 'caller', 'submitted',
  'gate_ttl', 'hint'
})
j_hint_here(A.hint)
local function f_locked(key, now, items)
  for _, it in ipairs(items) do
    local raw = redis.call('HGET', key, 'f' .. it[1])
    if raw then
      local n, last = string.match(raw, '^(%d+):(%d+)$')
      n, last = tonumber(n), tonumber(last)
      if n >= it[2] and now - last < it[3] then return {it[1], last + it[3] - now} end
    end
  end
  return nil
end

local function f_fail(key, now, items, count, ttl)
  for _, it in ipairs(items) do
    local raw = redis.call('HGET', key, 'f' .. it[1])
    local n = 0
    if raw then
      local rn, last = string.match(raw, '^(%d+):(%d+)$')
      if now - tonumber(last) < it[3] then n = tonumber(rn) end
    end
    redis.call('HSET', key, 'f' .. it[1], (n + count) .. ':' .. now)
  end
  if #items > 0 then redis.call('PEXPIRE', key, ttl) end
end

local gate, after_gate = q_items(rest)
if #gate > 0 then
  local refused = q_refusal(KEYS[3], tonumber(A.now), gate)
  if refused then return {'limited', {}, refused[1], refused[2]} end
  q_add(KEYS[3], tonumber(A.now), gate, tonumber(A.gate_ttl))
end

v_upgrade(KEYS[1])
local r = redis.call('HMGET', KEYS[1], 's', 'ch', 'h', 'p', 'o', 'cs')
local quota = A.quota_prefix .. (r[4] or '')
if not r[1] or (A.caller ~= '' and (r[5] or '') .. '\n' .. (r[6] or '') ~= A.caller) then return {'missing', {}} end
if r[1] == 'max_attempts_reached' then return {'max_attempts', redis.call('HGETALL', KEYS[1])} end
if r[1] ~= 'pending' then return {'not_pending', redis.call('HGETALL', KEYS[1])} end
local via = A.via
local now = tonumber(A.now)
local grace = tonumber(A.grace)
if via == 'call' then
  if r[2] ~= 'call' then return {'wrong_channel', redis.call('HGETALL', KEYS[1])} end
else
  if r[2] == 'call' then return {'wrong_channel', redis.call('HGETALL', KEYS[1])} end
  if not r[3] or r[3] == '' then return {'no_code', redis.call('HGETALL', KEYS[1])} end
  local items, at = q_items(after_gate)
  local refused = f_locked(quota, now, items)
  if refused then return {'locked', redis.call('HGETALL', KEYS[1]), refused[1], refused[2]} end
  local matched = false
  for i = at, #ARGV do
    if ARGV[i] == r[3] then matched = true end
  end
  if not matched then
    local wrong = tonumber(A.submitted)
    f_fail(quota, now, items, wrong, tonumber(A.quota_ttl))
    local attempts = redis.call('HINCRBY', KEYS[1], 'a', wrong)
    if attempts >= tonumber(A.max_attempts) then
      redis.call('HSET', KEYS[1], 's', 'max_attempts_reached')
      redis.call('HDEL', KEYS[1], 'h')
    end
    if grace ~= 0 then j_mirror(KEYS[1], grace) end
    return {'wrong', redis.call('HGETALL', KEYS[1])}
  end
end
redis.call('DEL', quota)  -- an approval ends the run of failures
redis.call('HSET', KEYS[1], 's', 'approved', 'v', via, 'va', A.now)
redis.call('HDEL', KEYS[1], 'h')
redis.call('PEXPIRE', KEYS[1], A.keep)
if grace ~= 0 then j_mirror(KEYS[1], grace) end
if A.event_id ~= '' then j_event(KEYS[2], A.event_id, 'verification.approved', now, KEYS[1]) end
return {'approved', redis.call('HGETALL', KEYS[1])}
