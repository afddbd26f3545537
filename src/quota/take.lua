-- One request against a calendar quota (ringway `quota` policy).
-- KEYS[1]: the counter of one key in one period (the period's first date is in the key name).
-- ARGV[1]: the limit; ARGV[2]: unix seconds when the key may go (a little after the period end).
-- Returns {admitted (1/0), used after this call}. A refused request is not counted, so the
-- counter never exceeds the limit and `used` is exactly how many requests were admitted.
local limit = tonumber(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= limit then
  return {0, used}
end
used = redis.call('INCR', KEYS[1])
if used == 1 then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return {1, used}
