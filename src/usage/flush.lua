-- Adds one batch of usage counts (ringway `[usage]`), at most once.
-- KEYS[1]: the day's counts hash; KEYS[2]: the day's "applied" hash (instance id -> last
-- batch number applied). Both share the day's hash tag (one slot).
-- ARGV[1]: instance id; ARGV[2]: batch number (increasing per instance); ARGV[3]: seconds to
-- keep the day; ARGV[4..]: field, count pairs.
-- Returns 1 when applied, 0 when this batch (or a later one) was applied before: a retry
-- after a timeout whose write did land adds nothing.
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local seq = tonumber(ARGV[2])
if seq <= last then
  return 0
end
for i = 4, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
