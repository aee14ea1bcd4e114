-- include: _quota
-- Give back what take.lua took from a quota for a request that ended up sending nothing.
-- KEYS[1] the quota
-- ARGV: 1 when it was taken (ms), 2.. the items taken, limit and counters alike (_quota.lua)
-- Returns 1.
q_give(KEYS[1], tonumber(ARGV[1]), q_items(2))
return 1
