-- Library (included by the transitions the customer's events follow): what those events need, written in the same
-- step as the transition, so no crash between two Redis calls can lose one. Used only when events are on. Included
-- after _record.lua and _hint.lua.
-- The journal is a hash in the verification's slot: entry id -> JSON. The sweep (verify/events.py) moves its
-- entries to the events outbox and the expiry schedule, found through a hint the request wrote beforehand.

-- `grace` (ms, never 0 here) says how long what is kept of a verification outlives it. Positive (events on): a
-- whole copy, since an expiry event carries the verification as it finally was. Negative (events off): only what
-- the expired count needs, to save memory: its status in the copy, and its labels in the watch.
-- channel, gateway, country (_record.lua), and a fallback chain's attempts, whose first names where it started
local J_LIGHT = {'ch', 'gw', 'cc', 'fa'}

-- On one server a transition hints its own journal when it writes an entry: the script's `hint` argument (its hash
-- tag; '' on a cluster) and its last two KEYS (the shard's hints and sequence, _hint.lua), set by j_hint_here. The
-- entry and its hint are then one step, which no sweep can come between. On a cluster the hints live in another
-- slot: the request brackets the transition with hint.lua calls instead (verify/events.py, Events.hinted).
local J_HINT = {}
local function j_hint_here(tag)
  if tag ~= '' then J_HINT.tag, J_HINT.hints, J_HINT.seq = tag, KEYS[#KEYS - 1], KEYS[#KEYS] end
end
local function j_hinted()
  if J_HINT.tag and not J_HINT.done then
    h_hint(J_HINT.hints, J_HINT.seq, J_HINT.tag)
    J_HINT.done = true
  end
end

-- Keep what the verification now is (see `grace`) for |grace| ms longer than the verification itself lives, so
-- the expiry sweep still knows how it ended after Redis dropped it.
local function j_mirror(key, grace)
  local final = key .. ':final'
  if grace > 0 then
    redis.call('COPY', key, final, 'REPLACE')
  else
    redis.call('HSET', final, 's', redis.call('HGET', key, 's'))
  end
  local ttl = redis.call('PTTL', key)
  redis.call('PEXPIRE', final, math.max(ttl, 0) + math.abs(grace))
end

-- The verification as a journal entry holds it: all of it, or (grace < 0) the fields of J_LIGHT.
local function j_fields(key, grace)
  if grace > 0 then return redis.call('HGETALL', key) end
  local values = redis.call('HMGET', key, unpack(J_LIGHT))
  local flat = {}
  for i, name in ipairs(J_LIGHT) do
    if values[i] then
      flat[#flat + 1] = name
      flat[#flat + 1] = values[i]
    end
  end
  return flat
end

-- An event (`type`) about the verification `key`, with its state now, under the stable id `id`.
local function j_event(journal, id, type, now, key)
  redis.call('HSET', journal, id, cjson.encode({kind = 'event', type = type, at = now, record = v_all(key)}))
  j_hinted()
end

-- Expect the verification `key` to expire at `due` (ms), unless it is approved or canceled first.
local function j_watch(journal, id, due, key, grace)
  redis.call('HSET', journal, 'watch:' .. id, cjson.encode({kind = 'watch', due = due,
                                                          record = j_fields(key, grace)}))
  j_hinted()
end

-- The step after step `step` of the verification `key`'s fallback chain falls due at its 'fd' (ms): the sweep puts
-- it on its shard's fallback schedule as '<id>.<step>' (verify/events.py), where a worker claims it (service.py,
-- Service.fallback). A send's entry ('step:<id>') replaces the one before; a failed delivery's ('step:<id>:now',
-- `suffix`) is one of its own, so that a sweep forgetting the send's entry it moved cannot drop it. The schedule
-- only ever moves a step earlier: the record's 'fd' is what the worker goes by.
local function j_step(journal, key, suffix)
  local f = redis.call('HMGET', key, 'fd', 'fi')
  local entry = {kind = 'step', due = tonumber(f[1]), step = tonumber(f[2] or '0'), record = {'fd', f[1]}}
  redis.call('HSET', journal, 'step:' .. v_id(key) .. suffix, cjson.encode(entry))
  j_hinted()
end
