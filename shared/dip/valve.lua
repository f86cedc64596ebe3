-- dipguard fleet-wide database valve: an exact sliding log of admitted reads.
--
-- KEYS[1]  the fleet's log: admission times in microseconds of Redis server time, newest
--          first. The key carries a {hash tag}, so clustered Redis keeps it on one slot.
-- KEYS[2]  optional: the log of a caller that takes only a share of the budget (the bulk
--          warm), on the same hash tag.
-- ARGV[1]  the budget: most reads admitted in any window, whoever asks
-- ARGV[2]  the window length in microseconds
-- ARGV[3]  the pace: most reads admitted in any slice of the window (the budget when unpaced)
-- ARGV[4]  the slice length in microseconds
-- ARGV[5]  optional: admit only while the fleet's log holds fewer than this many admissions
--          in the window (the budget less the headroom a sharing caller leaves to dips)
-- ARGV[6]  optional: the sharing caller's own limit per window
--
-- Returns {1, 0} when admitted, {0, wait_us} when shed (wait_us: until a slot can free).
--
-- Time comes from the server (TIME), never from the instance, so skewed clocks across
-- Function instances cannot split or stretch the window. Redis 5+ replicates a script's
-- effects rather than the script, so TIME before a write is allowed on Redis 6 and 7.
--
-- The pace is a finer limit stacked on the window's: without it a log that starts empty (a
-- restarted or flushed Redis) admits the whole budget in one burst, and because a sliding log
-- frees each admission exactly one window after it, the burst would recur every window.
--
-- Only admitted reads are logged, and a log never holds more than its limit, so memory is
-- bounded and a shed storm costs nothing but a few LINDEX reads.
--
-- The logs have no TTL. Under a volatile-* eviction policy (Azure Managed Redis defaults
-- to volatile-lru, and dipguard's Bicep sets it) a key without a TTL is never evicted, so
-- memory pressure takes cached answers, never the budget. Being bounded, a log left by a
-- fleet that has gone costs at most its limit's worth of entries.

local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local pace = tonumber(ARGV[3])
local slice = tonumber(ARGV[4])
local threshold = tonumber(ARGV[5] or ARGV[1])
local own_limit = tonumber(ARGV[6] or 0)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- How long until the n-th newest admission in a log is older than span; false if it is.
local function wait_for(key, n, span)
  if n < 1 then
    return span
  end
  local nth = redis.call('LINDEX', key, n - 1)
  if nth then
    local age = now - tonumber(nth)
    if age < span then
      return span - age
    end
  end
  return false
end

-- The longest of the waits that apply: every limit must have room.
local function longer(a, b)
  if b and (not a or b > a) then
    return b
  end
  return a
end

local wait = wait_for(KEYS[1], threshold, window)
wait = longer(wait, wait_for(KEYS[1], pace, slice))
if KEYS[2] then
  wait = longer(wait, wait_for(KEYS[2], own_limit, window))
end
if wait then
  return {0, wait}
end

-- Seconds and zero-padded microseconds concatenated: exact, whatever Lua's number format.
local stamp = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('LPUSH', KEYS[1], stamp)
redis.call('LTRIM', KEYS[1], 0, limit - 1)
if KEYS[2] then
  redis.call('LPUSH', KEYS[2], stamp)
  redis.call('LTRIM', KEYS[2], 0, own_limit - 1)
end
return {1, 0}
