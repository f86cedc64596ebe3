-- Write a cached answer unless the one already there is newer.
--
-- KEYS[1]  the answer's key
-- ARGV[1]  the new entry (JSON with "asOf": when the table last said so, in seconds)
-- ARGV[2]  the new entry's asOf
-- ARGV[3]  its lifetime in milliseconds
--
-- Returns 1 when written, 0 when a newer entry was kept.
--
-- Dips, the bulk warm and the loader all write answers, and a slow writer can land after a
-- fast one: a dip that read a phone number's old owner just before the loader moved the
-- number, say. Ordering by the table's own timestamp keeps the newest answer whichever
-- write comes last. An entry of the same age is overwritten, so a refresh can extend it.
-- An older write of the same answer extends it too, keeping the newer asOf: the loader
-- stamps its answers with its own clock, later than the table's timestamp that the next
-- warm and dips stamp theirs with, and those must still be able to refresh it.
-- cjson is part of Redis's Lua since 2.6.

local function same_answer(a, b)
  for k, v in pairs(a) do
    if k ~= 'asOf' and k ~= 'freshUntil' and b[k] ~= v then return false end
  end
  for k, v in pairs(b) do
    if k ~= 'asOf' and k ~= 'freshUntil' and a[k] ~= v then return false end
  end
  return true
end

local current = redis.call('GET', KEYS[1])
if current then
  local ok, old = pcall(cjson.decode, current)
  if ok and type(old) == 'table' then
    local then_ = tonumber(old['asOf'])
    if then_ and then_ > tonumber(ARGV[2]) then
      local fine, new = pcall(cjson.decode, ARGV[1])
      if not (fine and type(new) == 'table' and same_answer(old, new)) then
        return 0
      end
      new['asOf'] = old['asOf']
      redis.call('SET', KEYS[1], cjson.encode(new), 'PX', ARGV[3])
      return 1
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
