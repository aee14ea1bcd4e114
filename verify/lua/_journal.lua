-- Library (included by the transitions the customer's events follow): what those events need, written in the same
-- step as the transition, so no crash between two Redis calls can lose one. Used only when events are on.
-- The journal is a hash in the verification's slot: entry id -> JSON. The sweep (verify/events.py) moves its
-- entries to the events outbox and the expiry schedule, found through a hint the request wrote beforehand.

-- Keep a copy of the verification as it now is, for `grace` ms longer than the verification itself lives: an
-- expiry event carries the verification as it finally was, after Redis dropped it.
local function j_mirror(key, grace)
  local final = key .. ':final'
  redis.call('COPY', key, final, 'REPLACE')
  local ttl = redis.call('PTTL', key)
  redis.call('PEXPIRE', final, math.max(ttl, 0) + grace)
end

-- An event (`type`) about the verification `key`, with its state now, under the stable id `id`.
local function j_event(journal, id, type, now, key)
  redis.call('HSET', journal, id, cjson.encode({kind = 'event', type = type, at = now,
                                               record = redis.call('HGETALL', key)}))
end

-- Expect the verification `key` to expire at `due` (ms), unless it is approved or canceled first.
local function j_watch(journal, id, due, key)
  redis.call('HSET', journal, 'watch:' .. id, cjson.encode({kind = 'watch', due = due,
                                                          record = redis.call('HGETALL', key)}))
end
