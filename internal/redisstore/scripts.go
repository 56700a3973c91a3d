package redisstore

import "github.com/redis/go-redis/v9"

// Status codes that the scripts return, mapped to mfa errors by (*Store).status.
const (
	statusOK        = 0
	statusNotFound  = 1
	statusConflict  = 2
	statusWrongCode = 3
)

// Every script takes only keys of one user (hash tag {u:<id>}), so that it
// runs on Redis Cluster, and takes times as unix milliseconds of the
// caller's clock: the Redis server's clock decides nothing.

// startAttemptScript counts one attempt and returns the user's factors.
//
// KEYS: att, f, used. ARGV: now, max failures, failure TTL, then the lock
// lengths lim.Backoff(0), lim.Backoff(1), ... up to the first that reaches
// the maximum (all in ms). Returns {1, locked until} when locked, else
// {0, HGETALL f, HGETALL used}.
var startAttemptScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local max_failures = tonumber(ARGV[2])
local failure_ttl = tonumber(ARGV[3])
local a = redis.call('HMGET', KEYS[1], 'failures', 'locked_until_ms', 'lockouts', 'last_ms')
local failures = tonumber(a[1]) or 0
local locked_until = tonumber(a[2]) or 0
local lockouts = tonumber(a[3]) or 0
local last = tonumber(a[4])
if now < locked_until then
  return {1, a[2]}
end
locked_until = 0
if last ~= nil and now - last >= failure_ttl then
  failures = 0
  lockouts = 0
end
failures = failures + 1
local keep = failure_ttl
if failures >= max_failures then
  local n = #ARGV - 3
  local lock = tonumber(ARGV[3 + math.min(lockouts + 1, n)])
  locked_until = now + lock
  lockouts = lockouts + 1
  keep = math.max(keep, lock)
end
redis.call('HSET', KEYS[1],
  'failures', failures,
  'locked_until_ms', string.format('%.0f', locked_until),
  'lockouts', lockouts,
  'last_ms', ARGV[1])
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', keep))
return {0, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
`)

// acceptTOTPStepScript advances a factor's last accepted step.
//
// KEYS: f, step, att, v, used. ARGV: factor ID, step, now (ms). Returns 1 if
// accepted, 0 (nothing changed) if the step is not later or the factor is gone.
var acceptTOTPStepScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local last = redis.call('HGET', KEYS[2], ARGV[1])
if last and tonumber(ARGV[2]) <= tonumber(last) then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
return 1
`)

// activateEnrollmentScript consumes an activation code to activate a session.
//
// KEYS: session, act. ARGV: code hash, now (ms). The hashes are compared with
// Lua's ==, not in constant time: they are SHA-256 hashes of random codes,
// and timing that leaks a prefix of the stored hash does not help to find a
// code that hashes to it.
var activateEnrollmentScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local exp = redis.call('HGET', KEYS[1], 'expires_ms')
if not exp or now >= tonumber(exp) then
  return 1
end
local c = redis.call('HMGET', KEYS[2], 'hash', 'expires_ms')
if not c[1] or not c[2] or now >= tonumber(c[2]) or c[1] ~= ARGV[1] then
  return 3
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'activated', '1')
return 0
`)

// confirmFactorScript turns a pending factor into a confirmed one and
// deletes its enrolment session.
//
// KEYS: session, pending, f, step. ARGV: factor ID, step, now (ms), first
// factor ("1" or "0").
var confirmFactorScript = redis.NewScript(`
local now = tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'expires_ms', 'needs_activation', 'activated', 'first_factor')
if not s[1] or now >= tonumber(s[1]) then
  return 1
end
if s[2] == '1' and s[3] ~= '1' then
  return 2
end
local p = redis.call('HMGET', KEYS[2], 'factor', 'expires_ms')
if not p[1] or not p[2] or now >= tonumber(p[2]) then
  return 1
end
if (ARGV[4] == '1' or s[4] == '1') and redis.call('HLEN', KEYS[3]) > 0 then
  return 2
end
redis.call('HSET', KEYS[3], ARGV[1], p[1])
if cjson.decode(p[1]).kind == 'totp' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
end
redis.call('DEL', KEYS[2], KEYS[1])
return 0
`)
