-- Library (included by every script): its arguments by name. A script lists the names of its ARGV in the order the
-- caller sends them: the order of its header and of its record's fields in verify/store/scripts.py
-- (tests/store/test_scripts.py holds the three together). What follows them (quota items, ...) starts at `rest`.
local function args(names)
  local named = {}
  for i, name in ipairs(names) do named[name] = ARGV[i] end
  return named, #names + 1
end
