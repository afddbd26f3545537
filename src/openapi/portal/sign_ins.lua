-- Counts one portal sign-in of a consumer in a fixed window (ringway portal keys).
-- KEYS[1]: the consumer's counter; ARGV[1]: the limit; ARGV[2]: the window in seconds.
-- Returns {admitted (1/0), seconds until the window ends (0 when admitted)}. A refused
-- sign-in is not counted, and the counter always carries a TTL, so it cannot outlive its
-- window and lock a consumer out for good.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= limit then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], window)
    ttl = window
  end
  return {0, ttl}
end
used = redis.call('INCR', KEYS[1])
if used == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], window)
end
return {1, 0}
