-- ringway key store: read the version and every record in one atomic step.
-- KEYS[1] = records hash, KEYS[2] = version counter. Returns {version or nil, {field, value, ...}}.
local v = redis.call('GET', KEYS[2])
return {v, redis.call('HGETALL', KEYS[1])}
