-- Server-side scripts of cluster/scheduler.py. Each `--- @name` section is one script; the text before the
-- first section is a prelude prepended to every script. ARGV[1] is always the key prefix "ssp:{run}:fp:".
-- Keys: P:<id> hash (a, c, ema, last, sub, band); B:<band> set of ids; M meta hash (counters, and a:<sub> /
-- c:<sub> attempts and correct per subdomain); S set of subdomains; D:<step> dedupe set; T hash of id ->
-- 'ta tc' for every seen problem not dropped: a and c discounted by thompson_decay at each new step (one hash so
-- the thompson sampler reads the pool with one HGETALL).
-- Bands: u:<sub> (unseen, one per subdomain), p0/p1 (parked at raw rate 0/1), x (dropped by prefilter),
-- 0..K-1 (smoothed p-hat bins).

local pre = ARGV[1]

local function band_of(a, c, K, al, be, mina, cur, sub)
  if cur == 'x' then return 'x' end
  if a == 0 then return 'u:' .. sub end
  if a >= mina and c == 0 then return 'p0' end
  if a >= mina and c == a then return 'p1' end
  local b = math.floor((c + al) / (a + al + be) * K)
  if b >= K then b = K - 1 end
  return tostring(b)
end

--- @register
-- ARGV: pre, layout, then (id, subdomain) pairs. Returns the number of new problems.
local meta = pre .. 'M'
local layout = redis.call('HGET', meta, 'layout')
if layout and layout ~= ARGV[2] then
  return redis.error_reply('scheduler: this run was registered with band layout ' .. layout ..
    ' but the config says ' .. ARGV[2] .. '; use the same scheduler.bands/alpha/beta/min_attempts')
end
redis.call('HSET', meta, 'layout', ARGV[2])
local new = 0
for i = 3, #ARGV, 2 do
  local key = pre .. 'P:' .. ARGV[i]
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'a', 0, 'c', 0, 'ema', '', 'last', -1, 'sub', ARGV[i + 1], 'band', 'u:' .. ARGV[i + 1])
    redis.call('SADD', pre .. 'B:u:' .. ARGV[i + 1], ARGV[i])
    redis.call('SADD', pre .. 'S', ARGV[i + 1])
    new = new + 1
  end
end
return new

--- @record
-- ARGV: pre, step, K, alpha, beta, min_attempts, ema_decay, dedupe_ttl_s, thompson_decay, then (id, sample_idx,
-- 0|1) triples.
-- Atomic; idempotent per (step, id, sample_idx). Returns the number of newly applied results.
local step = tonumber(ARGV[2])
local K, al, be, mina = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local decay, ttl, tdecay = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local seen = {}
for i = 10, #ARGV, 3 do
  local id = ARGV[i]
  if not seen[id] then
    if redis.call('EXISTS', pre .. 'P:' .. id) == 0 then
      return redis.error_reply('scheduler: unknown problem id ' .. id .. '; register() it before record()')
    end
    seen[id] = true
  end
end
local dkey = pre .. 'D:' .. ARGV[2]
local groups, order, applied = {}, {}, 0
for i = 10, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('SADD', dkey, id .. '#' .. ARGV[i + 1]) == 1 then
    applied = applied + 1
    local g = groups[id]
    if not g then
      g = {0, 0}
      groups[id] = g
      order[#order + 1] = id
    end
    g[1] = g[1] + 1
    if ARGV[i + 2] == '1' then g[2] = g[2] + 1 end
  end
end
if ttl > 0 then redis.call('EXPIRE', dkey, ttl) end
local ng, allc, allw = 0, 0, 0
for _, id in ipairs(order) do
  local g = groups[id]
  local key = pre .. 'P:' .. id
  local v = redis.call('HMGET', key, 'a', 'c', 'ema', 'last', 'band', 'sub')
  local a, c = tonumber(v[1]) + g[1], tonumber(v[2]) + g[2]
  local t = redis.call('HGET', pre .. 'T', id)
  local ta, tc = tonumber(v[1]), tonumber(v[2])  -- no T entry: unseen, or recorded before T existed
  if t then ta, tc = t:match('(%S+) (%S+)') end
  if step > tonumber(v[4]) then ta, tc = ta * tdecay, tc * tdecay end
  local rate = g[2] / g[1]
  local ema = tonumber(v[3])
  if ema == nil then ema = rate else ema = (1 - decay) * ema + decay * rate end
  local last = math.max(tonumber(v[4]), step)
  local nb = band_of(a, c, K, al, be, mina, v[5], v[6])
  redis.call('HINCRBY', pre .. 'M', 'a:' .. v[6], g[1])
  redis.call('HINCRBY', pre .. 'M', 'c:' .. v[6], g[2])
  redis.call('HSET', key, 'a', a, 'c', c, 'ema', string.format('%.6f', ema), 'last', last, 'band', nb)
  if nb ~= 'x' then redis.call('HSET', pre .. 'T', id, string.format('%.6g %.6g', ta + g[1], tc + g[2])) end
  if nb ~= v[5] then redis.call('SMOVE', pre .. 'B:' .. v[5], pre .. 'B:' .. nb, id) end
  if g[1] >= 2 then
    ng = ng + 1
    if g[2] == 0 then allw = allw + 1 elseif g[2] == g[1] then allc = allc + 1 end
  end
end
if applied > 0 then
  local meta = pre .. 'M'
  redis.call('HINCRBY', meta, 'updates', applied)
  redis.call('HINCRBY', meta, 'groups', ng)
  redis.call('HINCRBY', meta, 'all_correct', allc)
  redis.call('HINCRBY', meta, 'all_wrong', allw)
end
return applied

--- @sample
-- ARGV: pre, n, first (0|1), nb, nb band names, nb per-problem weights, then n uniforms in [0, 1).
-- first: the unseen bands (u:*) are drawn before any other.
-- Draws n distinct ids: bands by weight x remaining count (without replacement), SRANDMEMBER within a band.
local n, first, nb = tonumber(ARGV[2]), ARGV[3] == '1', tonumber(ARGV[4])
local names, w, rem, take = {}, {}, {}, {}
local eligible = 0
for i = 1, nb do
  names[i] = ARGV[4 + i]
  w[i] = tonumber(ARGV[4 + nb + i])
  rem[i] = redis.call('SCARD', pre .. 'B:' .. names[i])
  take[i] = 0
  if w[i] > 0 or (first and names[i]:sub(1, 2) == 'u:') then eligible = eligible + rem[i] end
end
if eligible < n then
  return redis.error_reply('scheduler: asked for ' .. n .. ' distinct problems but only ' .. eligible ..
    ' are eligible (parked/dropped ones excluded); lower the batch size or raise scheduler.reprobe')
end
local left = n
for i = 1, nb do
  if first and names[i]:sub(1, 2) == 'u:' then
    take[i] = math.min(left, rem[i])
    rem[i] = 0
    left = left - take[i]
  end
end
local u = 5 + 2 * nb
for j = 1, left do
  local total = 0
  for i = 1, nb do total = total + w[i] * rem[i] end
  local r = tonumber(ARGV[u + j - 1]) * total
  local pick = nil
  for i = 1, nb do
    if w[i] > 0 and rem[i] > 0 then
      pick = i
      r = r - w[i] * rem[i]
      if r < 0 then break end
    end
  end
  take[pick] = take[pick] + 1
  rem[pick] = rem[pick] - 1
end
local out = {}
for i = 1, nb do
  if take[i] > 0 then
    for _, id in ipairs(redis.call('SRANDMEMBER', pre .. 'B:' .. names[i], take[i])) do out[#out + 1] = id end
  end
end
return out

--- @pool
-- ARGV: pre. Every problem not dropped, as a few long strings (a reply of one string per problem would cost
-- the client more than the server's whole scan): {T, sub1, ids1, a1, c1, sub2, ...}, where T is the T hash
-- joined by newlines (id, 'ta tc', id, ...) and idsK the unseen problems of subdomain K joined by newlines,
-- aK/cK the subdomain's attempts and correct.
local out = {table.concat(redis.call('HGETALL', pre .. 'T'), '\n')}
for _, sub in ipairs(redis.call('SMEMBERS', pre .. 'S')) do
  local m = redis.call('HMGET', pre .. 'M', 'a:' .. sub, 'c:' .. sub)
  local ids = table.concat(redis.call('SMEMBERS', pre .. 'B:u:' .. sub), '\n')
  for _, x in ipairs({sub, ids, m[1] or '0', m[2] or '0'}) do out[#out + 1] = x end
end
return out

--- @prefilter
-- ARGV: pre. Moves parked problems (raw rate exactly 0 or 1 after min_attempts) to the dropped band x.
local moved = 0
for _, b in ipairs({'p0', 'p1'}) do
  for _, id in ipairs(redis.call('SMEMBERS', pre .. 'B:' .. b)) do
    redis.call('SMOVE', pre .. 'B:' .. b, pre .. 'B:x', id)
    redis.call('HSET', pre .. 'P:' .. id, 'band', 'x')
    redis.call('HDEL', pre .. 'T', id)
    moved = moved + 1
  end
end
return moved

--- @import
-- ARGV: pre, layout, K, alpha, beta, min_attempts, then (id, sub, a, c, ema, last, dropped 0|1) rows.
-- A row replaces the stored problem only when it has more attempts, so nothing recorded is lost.
local meta = pre .. 'M'
local layout = redis.call('HGET', meta, 'layout')
if layout and layout ~= ARGV[2] then
  return redis.error_reply('scheduler: import layout mismatch: run has ' .. layout .. ', config ' .. ARGV[2])
end
redis.call('HSET', meta, 'layout', ARGV[2])
local K, al, be, mina = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local written, kept = 0, 0
for i = 7, #ARGV, 7 do
  local id, key = ARGV[i], pre .. 'P:' .. ARGV[i]
  local a, c = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local cur = redis.call('HMGET', key, 'a', 'band', 'c')
  if cur[1] and tonumber(cur[1]) >= a then
    kept = kept + 1
  else
    local old, sub = cur[2], ARGV[i + 1]
    local nb = band_of(a, c, K, al, be, mina, ARGV[i + 6] == '1' and 'x' or old, sub)
    redis.call('HINCRBY', meta, 'a:' .. sub, a - tonumber(cur[1] or '0'))
    redis.call('HINCRBY', meta, 'c:' .. sub, c - tonumber(cur[3] or '0'))
    redis.call('SADD', pre .. 'S', sub)
    redis.call('HSET', key, 'a', a, 'c', c, 'ema', ARGV[i + 4], 'last', ARGV[i + 5], 'sub', ARGV[i + 1], 'band', nb)
    if nb == 'x' or a == 0 then redis.call('HDEL', pre .. 'T', id) else redis.call('HSET', pre .. 'T', id, a .. ' ' .. c) end
    if old then redis.call('SREM', pre .. 'B:' .. old, id) end
    redis.call('SADD', pre .. 'B:' .. nb, id)
    written = written + 1
  end
end
return {written, kept}

--- @meta_max
-- ARGV: pre, then (field, value) pairs; raises each counter of the meta hash to at least value.
local meta = pre .. 'M'
for i = 2, #ARGV, 2 do
  local v = tonumber(redis.call('HGET', meta, ARGV[i]) or '0')
  if v < tonumber(ARGV[i + 1]) then redis.call('HSET', meta, ARGV[i], ARGV[i + 1]) end
end
return 0
