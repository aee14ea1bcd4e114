-- Library (included by the scripts that read or change a verification): a record's fields are stored under short
-- names (FIELDS in verify/store/verifications.py: 's' status, 'p' phone, 'ch' channel, 'h' code hash, ...), and only
-- the ones that are set. Its id is not one of them: it ends the record's key (prefix{tag}:vf:<id>).
-- A record written by the previous version (long names: 'status', 'phone', ..., and 'id') may still be in Redis for
-- its TTL after an upgrade: v_upgrade renames its fields in place, TTL kept, before a script reads it. Goes, with
-- LEGACY_FIELDS there, once no such record can be left.
local V_LEGACY = {
  phone = 'p', country = 'cc', channel = 'ch', locale = 'l', status = 's', attempts = 'a', sends = 'n',
  created_at = 'c', last_sent_at = 'ls', expires_at = 'e', delivery_status = 'd', delivery_raw = 'dr',
  code_hash = 'h', call_number = 'cn', call_numbers = 'cl', sms_encoding = 'se', sms_parts = 'sp', provider = 'gw',
  message_id = 'm', completed_via = 'v', verified_at = 'va', owner = 'o', app_hash = 'ah', otp_host = 'oh',
  sending = 'x', sending_since = 'xs'
}

local function v_upgrade(key)
  if redis.call('HEXISTS', key, 'status') == 0 then return end
  local flat = redis.call('HGETALL', key)
  local renamed, old = {}, {}
  for i = 1, #flat, 2 do
    local short = V_LEGACY[flat[i]]
    if short then
      old[#old + 1] = flat[i]
      if flat[i + 1] ~= '' then
        renamed[#renamed + 1] = short
        renamed[#renamed + 1] = flat[i + 1]
      end
    end
  end
  redis.call('HSET', key, unpack(renamed))  -- first, so that the hash is never empty (Redis would drop it, TTL too)
  redis.call('HDEL', key, 'id', unpack(old))
end

-- The id of the record `key`.
local function v_id(key)
  return string.match(key, '(%x+)$')
end

-- The record `key` as a script returns it when its caller may not know the id: its fields, then 'id' and its id;
-- empty when there is no such record.
local function v_all(key)
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    flat[#flat + 1] = 'id'
    flat[#flat + 1] = v_id(key)
  end
  return flat
end
