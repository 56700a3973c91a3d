package redisstore

import "github.com/redis/go-redis/v9"

// Status codes that the scripts return, mapped to mfa errors by (*Store).status.
const (
	statusOK        = 0
	statusNotFound  = 1
	statusConflict  = 2
	statusWrongCode = 3
	// statusUnsupported: ConfirmFactor of a pending WebAuthn factor.
	statusUnsupported = 4
)

// Every script takes only keys of one user (hash tag {u:<id>}), so that it
// runs on Redis Cluster, and takes times as unix milliseconds of the
// caller's clock: the Redis server's clock decides nothing.

// startAttemptScript counts one attempt and returns the user's factors.
//
// KEYS: att, f, used, wa. ARGV: now, max failures, failure TTL, then the lock
// lengths lim.Backoff(0), lim.Backoff(1), ... up to the first that reaches
// the maximum (all in ms). Returns {1, locked until} when locked, else
// {0, HGETALL f, HGETALL used, HGETALL wa}.
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
return {0, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
`)

// acceptTOTPStepScript advances a factor's last accepted step.
//
// KEYS: f, step, att, v, used. ARGV: factor ID, step, now (ms). Returns 1 if
// accepted, 0 (nothing changed) if the step is not later, the factor is gone
// or it is no TOTP factor: every TOTP factor has a step from its
// confirmation, and no other factor has one.
var acceptTOTPStepScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local last = redis.call('HGET', KEYS[2], ARGV[1])
if not last or tonumber(ARGV[2]) <= tonumber(last) then
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

// confirmFactorScript confirms a factor, deletes its enrolment session and,
// if given recovery code hashes, replaces the user's recovery codes.
//
// KEYS: session, pending, f, step, wa, rc. ARGV: factor ID, step, now (ms),
// first factor ("1" or "0"), the factor's JSON ("" to confirm the pending
// factor), its WebAuthn state "count|bs|uv" ("" if none), then the recovery
// code hashes, if any. A pending factor that is a WebAuthn credential is
// refused (statusUnsupported): its credential ID was not reserved (see
// ConfirmFactor), so confirming it could break the uniqueness of IDs.
var confirmFactorScript = redis.NewScript(`
local now = tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'expires_ms', 'needs_activation', 'activated', 'first_factor')
if not s[1] or now >= tonumber(s[1]) then
  return 1
end
if s[2] == '1' and s[3] ~= '1' then
  return 2
end
local js = ARGV[5]
if js == '' then
  local p = redis.call('HMGET', KEYS[2], 'factor', 'expires_ms')
  if not p[1] or not p[2] or now >= tonumber(p[2]) then
    return 1
  end
  js = p[1]
end
local f = cjson.decode(js)
if ARGV[5] == '' and (f.kind == 'webauthn' or f.webauthn ~= nil) then
  return 4
end
if (ARGV[4] == '1' or s[4] == '1') and redis.call('HLEN', KEYS[3]) > 0 then
  return 2
end
redis.call('HSET', KEYS[3], ARGV[1], js)
if f.kind == 'totp' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[1], ARGV[6])
end
if #ARGV > 6 then
  redis.call('DEL', KEYS[6])
  redis.call('SADD', KEYS[6], unpack(ARGV, 7))
end
redis.call('DEL', KEYS[2], KEYS[1])
return 0
`)

// releaseCredentialScript deletes a credential ID's reservation if it still
// holds the user who made it.
//
// KEYS: cred:<hex>. ARGV: user ID. Returns the number of keys deleted.
var releaseCredentialScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// acceptAssertionScript records a verified WebAuthn assertion if its sign
// count grew (or both counts are zero: an authenticator without a counter).
//
// KEYS: f, wa, att, v, used. ARGV: factor ID, sign count, backup state,
// user verified ("1" or "0"), now (ms). Returns 1 if accepted, 0 (nothing
// changed) if the count did not grow or the factor is gone or is not a
// WebAuthn credential (it has no entry in wa). Sign counts are 32-bit, exact
// as Lua numbers.
var acceptAssertionScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then
  return 0
end
local stored = tonumber(string.match(cur, '^(%d+)|'))
local count = tonumber(ARGV[2])
if not stored or not (count > stored or (count == 0 and stored == 0)) then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[4], ARGV[5])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[5])
return 1
`)

// consumeRecoveryCodeScript removes a recovery code; if there was one, it
// resets the failures and lock and records the verification.
//
// KEYS: rc, att, v. ARGV: code hash, now (ms). Returns {1 if consumed else
// 0, codes left}.
var consumeRecoveryCodeScript = redis.NewScript(`
local ok = redis.call('SREM', KEYS[1], ARGV[1])
if ok == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[3], ARGV[2])
end
return {ok, redis.call('SCARD', KEYS[1])}
`)

// replaceRecoveryCodesScript replaces the recovery codes and deletes the
// enrolment session that authorised it.
//
// KEYS: session, f, rc. ARGV: user ID, now (ms), then the new code hashes.
var replaceRecoveryCodesScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local s = redis.call('HMGET', KEYS[1], 'expires_ms', 'user_id', 'needs_activation', 'activated', 'first_factor')
if not s[1] or now >= tonumber(s[1]) or s[2] ~= ARGV[1] then
  return 1
end
if (s[3] == '1' and s[4] ~= '1') or s[5] == '1' or redis.call('HLEN', KEYS[2]) == 0 then
  return 2
end
redis.call('DEL', KEYS[3])
if #ARGV > 2 then
  redis.call('SADD', KEYS[3], unpack(ARGV, 3))
end
redis.call('DEL', KEYS[1])
return 0
`)
