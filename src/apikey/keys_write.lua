-- ringway key store: write records, bump the version and publish it, all or nothing.
-- KEYS[1] = records hash, KEYS[2] = version counter.
-- ARGV[1] = the version the writer read ('' = the store must not exist yet), ARGV[2] = channel,
-- ARGV[3] = the first version of a new store (the writer's clock in milliseconds),
-- ARGV[4..] = field, value pairs. Returns the new version, -1 if the store changed meanwhile,
-- or -2 (nothing written) if the version counter holds what no writer puts there (not a
-- positive integer of at most 15 digits: INCR could fail after the records were written).
local cur = redis.call('GET', KEYS[2])
if not cur then cur = '' end
if cur ~= ARGV[1] then return -1 end
if cur ~= '' and (not string.match(cur, '^[1-9]%d*$') or #cur > 15) then return -2 end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
local v
if cur == '' then
  -- A new store (first use, or Redis lost the old one) never repeats a version an older
  -- store had: an instance that missed the loss must not take the new set for its own.
  redis.call('SET', KEYS[2], ARGV[3])
  v = tonumber(ARGV[3])
else
  v = redis.call('INCR', KEYS[2])
end
redis.call('PUBLISH', ARGV[2], string.format('%d', v))
return v
