-- ringway global rate limit: GCRA "take up to n" over one or more limits, atomically.
--
-- KEYS[i]  one GCRA cell (a TAT in microseconds of Redis TIME) per limit; all KEYS of one call
--          share one hash tag, so they live in one cluster slot.
-- ARGV[1]  want: tokens to take (1 for `exact` mode, the lease size for `leased` mode).
-- ARGV[2i], ARGV[2i+1]  T_i (emission interval) and L_i (tolerance = capacity * T_i) of
--          limit i, in microseconds.
--
-- Grants g = the largest count <= want that EVERY limit admits right now (a limit admits g
-- iff debt + g*T <= L), and charges g*T_i to every limit. g = 0 charges nothing (like local
-- check_all: a denial consumes no quota on any limit).
--
-- Returns {granted, remaining, reset_us, retry_us, index}:
--   granted > 0: remaining = requests the tightest limit still admits, reset_us = its debt,
--                index = that limit (0-based);
--   granted = 0: retry_us = time until every limit admits one again (the longest wait),
--                reset_us = that limit's debt, index = that limit.
--
-- Exactness: every number is an integer below 2^51 (Redis TIME in us ~ 1.8e15, L < 2^50), so
-- doubles hold them exactly; a quotient q = x/T is floored and corrected against the exact
-- product, so no rounding can over-grant.
local want = tonumber(ARGV[1]) or 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local base = {}
local grant = want
local wait, widx, wreset = 0, 1, 0
for i = 1, n do
  local T = tonumber(ARGV[2 * i])
  local L = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  base[i] = tat
  local debt = tat - now
  local room = L - debt
  local avail = 0
  if room > 0 then
    avail = math.floor(room / T)
    if avail * T > room then avail = avail - 1 end
  end
  if avail < grant then grant = avail end
  if avail < 1 then
    local w = debt + T - L
    if w > wait then wait, widx, wreset = w, i, debt end
  end
end
if grant < 1 then
  return {0, 0, wreset, wait, widx - 1}
end
local rem, ridx, rreset = -1, 1, 0
for i = 1, n do
  local T = tonumber(ARGV[2 * i])
  local L = tonumber(ARGV[2 * i + 1])
  local tat = base[i] + grant * T
  local debt = tat - now
  -- The cell carries no information once idle: let Redis drop it then (ms, rounded up).
  redis.call('SET', KEYS[i], string.format('%d', tat), 'PX',
    string.format('%d', math.floor(debt / 1000) + 1))
  local r = math.floor((L - debt) / T)
  if r * T > L - debt then r = r - 1 end
  if rem < 0 or r < rem or (r == rem and debt > rreset) then
    rem, ridx, rreset = r, i, debt
  end
end
return {grant, rem, rreset, 0, ridx - 1}
