"""Server-side scripts: each one round trip, atomic in Redis.

Entries are stored as described in ``hita.cache.codec``: byte 1 is ``v``
(value) or ``l`` (lease), bytes 2..17 the version or lease token.
"""

from typing import Final

# Read one entry, resolving a namespace's generation on the server, and take a
# lease on a miss.
#   KEYS[1]  the entry's key, or the namespace's generation key
#   ARGV[1]  '' for a plain key; else the data key prefix (before the generation)
#   ARGV[2]  the namespaced suffix
#   ARGV[3]  a fresh generation, stored if the namespace has none yet
#   ARGV[4]  a fresh lease token to take on a miss ('' to take none)
#   ARGV[5]  lease time to live, ms
# Returns {status, generation, data}: status 1 hit (data = the stored value,
# then its PTTL), 0 miss (data = our lease token or nothing), 2 another
# reader holds the lease (data = its token).
READ: Final = """
local key = KEYS[1]
local gen = ''
if ARGV[1] ~= '' then
  gen = redis.call('GET', KEYS[1])
  if not gen then
    gen = ARGV[3]
    redis.call('SET', KEYS[1], gen)
  end
  key = ARGV[1] .. gen .. ':' .. ARGV[2]
end
local v = redis.call('GET', key)
if v then
  if string.sub(v, 1, 1) == 'l' then
    return {2, gen, string.sub(v, 2, 17)}
  end
  return {1, gen, v, redis.call('PTTL', key)}
end
if ARGV[4] == '' then
  return {0, gen}
end
redis.call('SET', key, 'l' .. ARGV[4], 'PX', ARGV[5])
return {0, gen, ARGV[4]}
"""

# Store a value only if the entry still holds what the writer saw.
#   KEYS[1]  the entry's data key (generation resolved)
#   ARGV[1]  the lease token or value version the writer saw; '*' for any
#   ARGV[2]  the encoded value
#   ARGV[3]  time to live, ms
#   ARGV[4]  '1' if an absent entry may be filled (namespaced entries, whose
#            generation already fences off older writers)
# Returns 1 if stored, 0 if not.
FILL: Final = """
local cur = redis.call('GET', KEYS[1])
if cur then
  if ARGV[1] ~= '*' and string.sub(cur, 2, 17) ~= ARGV[1] then
    return 0
  end
elseif ARGV[4] ~= '1' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# Give back a lease that was not used (the loader failed, or the read that
# took it timed out before its answer came back, so its data key is not known
# here: then it is resolved as READ resolved it).
#   KEYS[1]  data key, or (namespaced) the generation key;  ARGV[1]  our lease token
#   ARGV[2]  '' for a data key; else the data key prefix;  ARGV[3]  the suffix
RELEASE: Final = """
local key = KEYS[1]
if ARGV[2] ~= '' then
  local gen = redis.call('GET', KEYS[1])
  if not gen then
    return 0
  end
  key = ARGV[2] .. gen .. ':' .. ARGV[3]
end
local cur = redis.call('GET', key)
if cur and cur == 'l' .. ARGV[1] then
  return redis.call('DEL', key)
end
return 0
"""

# A namespace's current generation, created if absent.
#   KEYS[1]  generation key;  ARGV[1]  a fresh generation
GENERATION: Final = """
local gen = redis.call('GET', KEYS[1])
if not gen then
  gen = ARGV[1]
  redis.call('SET', KEYS[1], gen)
end
return gen
"""

# Claim the current time slot of a periodic job, once across all instances.
# The slot is computed from Redis's clock, so instances with skewed clocks agree.
#   KEYS[1]  the lock's base key (with a hash tag)
#   ARGV[1]  slot length, ms;  ARGV[2]  the claimant's token
# Returns the slot number if claimed, -1 if another instance has it.
CLAIM_SLOT: Final = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = math.floor(now_ms / tonumber(ARGV[1]))
local key = KEYS[1] .. ':' .. slot
if redis.call('SET', key, ARGV[2], 'NX', 'PX', 2 * tonumber(ARGV[1])) then
  return slot
end
return -1
"""

# Instances that reached the source of truth, each with the time (ms since the
# epoch) until which that holds; instances silent for a while leave the set.
#   KEYS[1]  the set;  ARGV[1]  until;  ARGV[2]  the instance;  ARGV[3]  keep, ms
WITNESS: Final = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
