-- include: _args _hint
-- Say that a slot's journal may get an entry (_hint.lua): what a request sends around a transition on a cluster,
-- where the hints live in another slot than the journal (on one server the transition hints itself: _journal.lua).
-- KEYS[1] the hints (sorted set: hash tag -> the number of its last hint), KEYS[2] the shard's sequence (a counter)
-- ARGV, by name (_args.lua):
--   tag  the hash tag of the slot
-- Returns the number given.
local A = args({'tag'})
return h_hint(KEYS[1], KEYS[2], A.tag)
