-- Library (included by start.lua and begin_send.lua): reserve a send on a pending verification.

-- Why the pending record `key` may not send now ('max_sends', 'in_flight', 'cooldown'), or nil if it may.
-- ARGV-independent: now, cooldown (ms), max sends, lease (ms).
local function s_blocked(key, now, cooldown, max_sends, lease)
  local r = redis.call('HMGET', key, 'n', 'ls', 'x', 'xs')
  local sends = tonumber(r[1])
  if sends >= max_sends then return 'max_sends' end
  if r[3] and now - tonumber(r[4]) < lease then return 'in_flight' end
  if sends > 0 and now < tonumber(r[2]) + cooldown then return 'cooldown' end
  return nil
end

-- The reservation (nonce) keeps a concurrent send out while a gateway is called; it lapses after the lease, so a
-- worker that died mid-send does not block the verification.
local function s_reserve(key, now, nonce)
  redis.call('HSET', key, 'x', nonce, 'xs', now)
end
