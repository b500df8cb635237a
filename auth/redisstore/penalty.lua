-- mailgate: one atomic operation on a failure record (see auth.SharedThrottle).
-- The record is a hash: s = score, t = time of s, b = end of the block (0: none);
-- times are microseconds since the Unix epoch.
--
-- KEYS[1]  the record
-- ARGV[1]  "read", "fail" or "forget"
-- ARGV[2]  now in µs; "0": the server's clock (TIME)
-- ARGV[3]  drain rate: score per second (> 0)
-- ARGV[4]  score at which "fail" starts a block; "0": never
-- ARGV[5]  length of a block in µs
--
-- The score drains at the rate since t, never below 0 (a clock that went
-- back drains nothing). "fail" adds 1 and, when the score reaches the block
-- score while no block runs, starts one. "forget" deletes the record unless
-- a block runs. "fail" sets the record to expire when it has drained and
-- its block has ended, plus a second.
--
-- Returns {score (decimal string), µs of block left (0: none), 1 if this call started the block}.
local now = tonumber(ARGV[2])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rate = tonumber(ARGV[3]) / 1000000
if not (rate > 0) then
  return redis.error_reply('ERR mailgate penalty: the rate must be positive')
end
local rec = redis.call('HMGET', KEYS[1], 's', 't', 'b')
local score = tonumber(rec[1]) or 0
local updated = tonumber(rec[2]) or now
local blocked = tonumber(rec[3]) or 0
if now > updated then
  score = math.max(0, score - (now - updated) * rate)
  updated = now
end
local op = ARGV[1]
local started = 0
if op == 'fail' then
  score = score + 1
  local block_at = tonumber(ARGV[4])
  if block_at > 0 and score >= block_at and now >= blocked then
    blocked = now + tonumber(ARGV[5])
    started = 1
  end
  local keep_ms = math.ceil(math.max(blocked - now, score / rate) / 1000) + 1000
  redis.call('HSET', KEYS[1], 's', string.format('%.17g', score),
    't', string.format('%.0f', updated), 'b', string.format('%.0f', blocked))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', keep_ms))
elseif op == 'forget' then
  if now >= blocked then
    redis.call('DEL', KEYS[1])
    score = 0
  end
elseif op ~= 'read' then
  return redis.error_reply('ERR mailgate penalty: unknown operation')
end
local left = 0
if blocked > now then
  left = blocked - now
end
return {string.format('%.17g', score), left, started}
