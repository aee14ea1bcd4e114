-- include: _args _quota
-- Give back what take.lua took from a quota for a request that ended up sending nothing.
-- KEYS[1] the quota
-- ARGV, by name (_args.lua):
--   taken_at  when it was taken (ms)
-- then the items taken, limit and counters alike (_quota.lua)
-- Returns 1.
local A, rest = args({'taken_at'})
q_give(KEYS[1], tonumber(A.taken_at), q_items(rest))
return 1
