-- Claim an Idempotency-Key, or return what is already stored under it.
-- KEYS[1] idempotency key
-- ARGV: 1 the claim to store (JSON), 2 claim lifetime (ms)
-- Returns false when the caller now holds the claim, else the stored JSON (a claim or a finished response).
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
