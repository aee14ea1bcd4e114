-- Library (included by scripts that take or give back quota): sliding-window counters.
-- A quota is one hash; each window length is one field, "<window index>:<count>:<previous window's count>".
-- The estimate for "the last <window> ms" is the current count plus the previous window's count weighted by how
-- much of that window still overlaps: two numbers per window, whatever the limit's size.
-- Items are {field, amount, window (ms)}, read from ARGV by q_items.

local function q_items(at)
  local n = tonumber(ARGV[at])
  local items = {}
  for i = 1, n do
    local j = at + 1 + (i - 1) * 3
    items[i] = {ARGV[j], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])}
  end
  return items, at + 1 + n * 3
end

local function q_state(key, field, now, window)
  local idx = math.floor(now / window)
  local raw = redis.call('HGET', key, field)
  local c, p = 0, 0
  if raw then
    local w, rc, rp = string.match(raw, '^(%d+):(%d+):(%d+)$')
    w = tonumber(w)
    if w == idx then
      c, p = tonumber(rc), tonumber(rp)
    elseif w == idx - 1 then
      p = tonumber(rc)
    end
  end
  return idx, c, p
end

-- Whether one more fits: p * (window - elapsed) / window + c + 1 <= amount, in integers.
local function q_fits(now, idx, window, c, p, amount)
  return p * (window - (now - idx * window)) + (c + 1) * window <= amount * window
end

-- How long (ms) until one more fits, if nothing else is taken meanwhile.
local function q_wait(now, idx, window, c, p, amount)
  local t
  if c + 1 <= amount then
    t = idx * window + math.ceil(window - (amount - c - 1) * window / p)
  else
    t = (idx + 1) * window + math.ceil(window - (amount - 1) * window / c)
  end
  return math.max(t - now, 1)
end

-- Nil if every item fits, else {field, ms to wait} of the first that does not.
local function q_refusal(key, now, items)
  for _, it in ipairs(items) do
    local idx, c, p = q_state(key, it[1], now, it[3])
    if not q_fits(now, idx, it[3], c, p, it[2]) then
      return {it[1], q_wait(now, idx, it[3], c, p, it[2])}
    end
  end
  return nil
end

-- Count one for every item; returns, per item, 1 if the count is now over its amount (for counters), else 0.
local function q_add(key, now, items, ttl)
  local over = {}
  for i, it in ipairs(items) do
    local idx, c, p = q_state(key, it[1], now, it[3])
    redis.call('HSET', key, it[1], idx .. ':' .. (c + 1) .. ':' .. p)
    over[i] = q_fits(now, idx, it[3], c, p, it[2]) and 0 or 1
  end
  if #items > 0 then redis.call('PEXPIRE', key, ttl) end
  return over
end

-- Give back one taken at `taken_at`, from whichever window holds it now. A window back at nothing is dropped, and
-- with the last one the key (Redis drops an empty hash): a refused request leaves no state behind.
local function q_give(key, taken_at, items)
  for _, it in ipairs(items) do
    local raw = redis.call('HGET', key, it[1])
    if raw then
      local w, c, p = string.match(raw, '^(%d+):(%d+):(%d+)$')
      w, c, p = tonumber(w), tonumber(c), tonumber(p)
      local idx = math.floor(taken_at / it[3])
      if w == idx and c > 0 then
        c = c - 1
      elseif w == idx + 1 and p > 0 then
        p = p - 1
      end
      if c == 0 and p == 0 then
        redis.call('HDEL', key, it[1])
      else
        redis.call('HSET', key, it[1], w .. ':' .. c .. ':' .. p)
      end
    end
  end
end
