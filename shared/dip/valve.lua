-- dipguard fleet-wide database valve: an exact sliding log of admitted reads.
--
-- KEYS[1]  list of admission times in microseconds of Redis server time, newest first.
--          The key carries a {hash tag}, so clustered Redis keeps it on one slot.
-- ARGV[1]  the budget: most reads admitted in any window
-- ARGV[2]  the window length in microseconds
--
-- Returns {1, 0} when admitted, {0, wait_us} when shed (wait_us: until a slot frees).
--
-- Time comes from the server (TIME), never from the instance, so skewed clocks across
-- Function instances cannot split or stretch the window. Redis 5+ replicates a script's
-- effects rather than the script, so TIME before a write is allowed on Redis 6 and 7.
-- Only admitted reads are logged, and the list never holds more than the budget, so
-- memory is bounded and a shed storm costs nothing but the read of one element.

local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- The budget-th newest admission. If it is inside the window, one more would exceed it.
local nth = redis.call('LINDEX', KEYS[1], limit - 1)
if nth then
  local age = now - tonumber(nth)
  if age < window then
    return {0, window - age}
  end
end

-- Seconds and zero-padded microseconds concatenated: exact, whatever Lua's number format.
redis.call('LPUSH', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
redis.call('LTRIM', KEYS[1], 0, limit - 1)
-- The key vanishes one window after the last admission, so a dead worker leaks nothing.
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
return {1, 0}
