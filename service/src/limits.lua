-- switchyard-limits: one RateLimitRequest, atomically (one EVALSHA per gRPC call).
--
-- KEYS: one key per item (a GCRA bucket or a budget hash), then the budget index keys (sorted sets).
-- ARGV[1]: "now" in nanoseconds since the epoch, or "" for the Redis server's clock (TIME), so that every
--          replica of the service reads one clock. Tests pass a fixed value.
-- ARGV[2 + 6*(i-1) ...]: per item i: kind, op, cost, a, b, c
--   kind "r" (GCRA rate):  a = window in ns, b = max (units per window)
--   kind "b" (budget):     a = max_micros,   b = expiry (unix s), c = position of its index key in KEYS
--   op "a" admission (all or nothing across every "a" item), "+" charge, "-" refund (always applied).
-- Reply: { overall (1 ok, 2 over), then per item: code (1 ok, 2 over), remaining, reset_ns }.
--
-- A TAT (theoretical arrival time) is stored as decimal nanoseconds since the epoch, the very u64 the
-- filter's gcra_step keeps. Lua numbers are doubles (exact integers below 2^53, about 104 days in ns), so a
-- time is handled as a pair (seconds, nanoseconds) and only differences (ahead of now, window, cost x
-- interval) are ever single numbers: the arithmetic is then exactly gcra_step/gcra_shift's while those
-- stay below 2^53 ns (windows up to 104 days).

local E9 = 1000000000
local CAP = 9007199254740992 -- 2^53

local function idiv(a, b) -- floor(a / b) for non-negative integers, exact
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function parse(s) -- decimal ns -> (s, ns)
  if not s or s == '' then return 0, 0 end
  local n = string.len(s)
  if n <= 9 then return 0, tonumber(s) end
  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))
end

local function fmt(s, ns)
  if s == 0 then return string.format('%d', ns) end
  return string.format('%d%09d', s, ns)
end

local function less(as, an, bs, bn)
  return as < bs or (as == bs and an < bn)
end

local function diff(as, an, bs, bn) -- a - b for a >= b
  return (as - bs) * E9 + (an - bn)
end

local function add(s, ns, d) -- (s, ns) + d, d >= 0
  local ds = math.floor(d / E9)
  local dn = d - ds * E9
  if dn < 0 then ds, dn = ds - 1, dn + E9 elseif dn >= E9 then ds, dn = ds + 1, dn - E9 end
  s, ns = s + ds, ns + dn
  if ns >= E9 then s, ns = s + 1, ns - E9 end
  return s, ns
end

local function sub(s, ns, d) -- (s, ns) - d, saturating at 0
  local ds = math.floor(d / E9)
  local dn = d - ds * E9
  if dn < 0 then ds, dn = ds - 1, dn + E9 elseif dn >= E9 then ds, dn = ds + 1, dn - E9 end
  s, ns = s - ds, ns - dn
  if ns < 0 then s, ns = s - 1, ns + E9 end
  if s < 0 then return 0, 0 end
  return s, ns
end

local function clamp(x)
  if x < 0 then return 0 end
  if x > CAP then return CAP end
  return x
end

local now_s, now_n
if ARGV[1] ~= '' then
  now_s, now_n = parse(ARGV[1])
else
  local t = redis.call('TIME')
  now_s, now_n = tonumber(t[1]), tonumber(t[2]) * 1000
end

local n = (#ARGV - 1) / 6
local items = {}
for i = 1, n do
  local o = 1 + 6 * (i - 1)
  items[i] = {
    key = KEYS[i], kind = ARGV[o + 1], op = ARGV[o + 2], cost = tonumber(ARGV[o + 3]),
    a = tonumber(ARGV[o + 4]), b = tonumber(ARGV[o + 5]), c = tonumber(ARGV[o + 6]),
  }
end

-- Current state of a key: this call's pending value if an earlier item touched it, else Redis's.
local pending = {}
local function rate_tat(key)
  local p = pending[key]
  if p then return p[1], p[2] end
  return parse(redis.call('GET', key))
end
local fresh = {} -- budget keys this call creates: they get their expiry and their index entry
local function spent_of(key)
  local p = pending[key]
  if p then return p end
  local v = redis.call('HGET', key, 'spent')
  if not v then fresh[key] = true end
  return tonumber(v or '0')
end

-- GCRA state for the x-ratelimit-like fields: remaining units and ns until the bucket is full again.
local function rate_state(window, max, interval, ahead)
  local free = window - ahead
  if free < 0 then free = 0 end
  local rem = idiv(free, interval)
  if rem > max then rem = max end
  return rem, ahead
end

local function write_rate(it, s, ns)
  local ahead = 0
  if less(now_s, now_n, s, ns) then ahead = diff(s, ns, now_s, now_n) end
  local ttl = it.a
  if ahead > ttl then ttl = ahead end
  redis.call('SET', it.key, fmt(s, ns), 'PX', math.min(1e13, math.max(1, math.ceil(ttl / 1000000))))
end

-- A budget's expiry (its period's end plus a margin) and index entry are set once, when it is created.
local function write_budget(it, spent)
  redis.call('HSET', it.key, 'spent', string.format('%d', spent), 'max', string.format('%d', it.a))
  if fresh[it.key] then
    fresh[it.key] = nil
    redis.call('EXPIREAT', it.key, it.b)
    local idx = KEYS[it.c]
    redis.call('ZADD', idx, it.b, it.key)
    redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. string.format('%d', now_s))
    if redis.call('TTL', idx) < it.b - now_s then redis.call('EXPIREAT', idx, it.b) end
  end
end

local out = { 1 }
local function status(i, code, rem, reset)
  out[2 + 3 * (i - 1)] = code
  out[3 + 3 * (i - 1)] = clamp(rem)
  out[4 + 3 * (i - 1)] = clamp(reset)
end

-- Settlements first: always applied, always OK.
for i, it in ipairs(items) do
  if it.op ~= 'a' then
    if it.kind == 'r' then
      local interval = idiv(it.a, math.max(it.b, 1))
      local s, ns = rate_tat(it.key)
      if it.op == '+' or it.cost == 0 then -- as gcra_shift: a zero delta counts as a charge
        if less(s, ns, now_s, now_n) then s, ns = now_s, now_n end
        s, ns = add(s, ns, it.cost * interval)
      else
        s, ns = sub(s, ns, it.cost * interval)
      end
      write_rate(it, s, ns)
      local ahead = 0
      if less(now_s, now_n, s, ns) then ahead = diff(s, ns, now_s, now_n) end
      status(i, 1, rate_state(it.a, it.b, interval, ahead))
    else
      local spent = spent_of(it.key)
      if it.op == '+' then spent = spent + it.cost else spent = math.max(0, spent - it.cost) end
      write_budget(it, spent)
      status(i, 1, it.a - spent, 0)
    end
  end
end

-- Admission, pass 1: decide every item against the state including earlier items of this call.
local over = false
local taken = {}
for i, it in ipairs(items) do
  if it.op == 'a' then
    if it.kind == 'r' then
      local interval = idiv(it.a, math.max(it.b, 1))
      local s, ns = rate_tat(it.key)
      if less(s, ns, now_s, now_n) then s, ns = now_s, now_n end
      local ahead = diff(s, ns, now_s, now_n)
      local new_ahead = ahead + it.cost * interval
      if (it.b == 0 and it.cost > 0) or new_ahead > it.a then
        over = true
        local retry = new_ahead - it.a
        if it.b == 0 then retry = it.a end
        local rem = rate_state(it.a, it.b, interval, ahead)
        status(i, 2, rem, retry)
      else
        local ts, tn = add(now_s, now_n, new_ahead)
        pending[it.key] = { ts, tn }
        taken[i] = { ts, tn }
        status(i, 1, rate_state(it.a, it.b, interval, new_ahead))
        it.pre = { (rate_state(it.a, it.b, interval, ahead)), ahead }
      end
    else
      local spent = spent_of(it.key)
      if it.cost == 0 or spent + it.cost <= it.a then
        pending[it.key] = spent + it.cost
        taken[i] = spent + it.cost
        status(i, 1, it.a - spent - it.cost, 0)
        it.pre = { it.a - spent, 0 }
      else
        over = true
        status(i, 2, it.a - spent, 0)
      end
    end
  end
end

-- Pass 2: all admitted -> write; any refused -> write nothing, admitted items report their state untaken.
for i, it in ipairs(items) do
  if taken[i] then
    if over then
      status(i, 1, it.pre[1], it.pre[2])
    elseif it.kind == 'r' then
      write_rate(it, taken[i][1], taken[i][2])
    else
      write_budget(it, taken[i])
    end
  end
end
if over then out[1] = 2 end
return out
