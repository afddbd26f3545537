-- ringway key store: write records, bump the version and publish it, all or nothing.
-- KEYS[1] = records hash, KEYS[2] = version counter.
-- ARGV[1] = the version the writer read ('' = the store must not exist yet), ARGV[2] = channel,
-- ARGV[3..] = field, value pairs. Returns the new version, or -1 if the store changed meanwhile.
local cur = redis.call('GET', KEYS[2])
if not cur then cur = '' end
if cur ~= ARGV[1] then return -1 end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], tostring(v))
return v
