-- include: _args
-- Claim an Idempotency-Key, or return what is already stored under it.
-- KEYS[1] idempotency key
-- ARGV, by name (_args.lua):
--   claim  the claim to store (JSON)
--   lease  claim lifetime (ms)
-- Returns false when the caller now holds the claim, else the stored JSON (a claim or a finished response).
local A = args({'claim', 'lease'})
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], A.claim, 'PX', A.lease)
return false
