-- A lease that one warm at a time holds: take, renew, or give it back.
--
-- KEYS[1]  the lease
-- ARGV[1]  who asks
-- ARGV[2]  how long the lease lasts from now, in milliseconds (take and renew)
-- ARGV[3]  "take" or "release"
--
-- Returns {1, ""} when the caller holds it (or has given it back), {0, holder, ms_left}
-- when someone else holds it.
--
-- The key holds "holder|expires_ms" and has no TTL, with the expiry judged by the Redis
-- server's clock: under a volatile-* eviction policy a key without a TTL is never evicted,
-- so memory pressure cannot hand a second warm the lease while the first still runs.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, '|', 1, true)
  local holder = string.sub(current, 1, sep - 1)
  local expires = tonumber(string.sub(current, sep + 1))
  if holder ~= ARGV[1] and expires > now then
    return {0, holder, expires - now}
  end
  if ARGV[3] == 'release' then
    if holder == ARGV[1] then
      redis.call('DEL', KEYS[1])
    end
    return {1, ''}
  end
elseif ARGV[3] == 'release' then
  return {1, ''}
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. (now + tonumber(ARGV[2])))
return {1, ''}
