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

// The outcomes of acceptAssertionScript, strings in its replies.
const (
	assertionRefused  = "0"
	assertionAccepted = "1"
	assertionCloned   = "2"
)

// opKeepMS is how long, in ms, a script keeps what a call did under the
// call's op key, for a client retry of the call to find (see opKey).
const opKeepMS = "60000"

// Every script takes only keys of one user (hash tag {u:<id>}), so that it
// runs on Redis Cluster, and takes times as unix milliseconds of the
// caller's clock: the Redis server's clock decides nothing.

// startAttemptScript counts one attempt and returns the user's factors and
// epoch.
//
// KEYS: att, f, used, wa, susp, epoch. ARGV: now, max failures, failure
// TTL, then the lock lengths lim.Backoff(0), lim.Backoff(1), ... up to the
// first that reaches the maximum (all in ms). Returns {1, locked until,
// epoch} when locked, else {0, HGETALL f, HGETALL used, HGETALL wa, HGETALL
// susp, epoch, the lock end this attempt set (0 for none)}.
var startAttemptScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local epoch = redis.call('GET', KEYS[6]) or '0'
local max_failures = tonumber(ARGV[2])
local failure_ttl = tonumber(ARGV[3])
local a = redis.call('HMGET', KEYS[1], 'failures', 'locked_until_ms', 'lockouts', 'last_ms')
local failures = tonumber(a[1]) or 0
local locked_until = tonumber(a[2]) or 0
local lockouts = tonumber(a[3]) or 0
local last = tonumber(a[4])
if now < locked_until then
  return {1, a[2], epoch}
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
return {0, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]),
  redis.call('HGETALL', KEYS[5]), epoch, string.format('%.0f', locked_until)}
`)

// acceptTOTPStepScript advances a factor's last accepted step.
//
// KEYS: f, step, att, v, used, susp, epoch, op. ARGV: factor ID, step, now
// (ms), epoch. Returns 1 if accepted, 0 (nothing changed) if the step is not
// later, the factor is gone, suspended or no TOTP factor (every TOTP factor
// has a step from its confirmation, and no other factor has one), or the
// epoch is not the user's. Run again for the same call (op), it returns
// what the first run did (see opKey).
var acceptTOTPStepScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[8]) == 1 then
  return 1
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 or redis.call('HEXISTS', KEYS[6], ARGV[1]) == 1 or
    (redis.call('GET', KEYS[7]) or '0') ~= ARGV[4] then
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
redis.call('SET', KEYS[8], '1', 'PX', ` + opKeepMS + `)
return 1
`)

// activateEnrollmentScript consumes an activation code to activate a session.
//
// KEYS: session, act, epoch. ARGV: code hash, now (ms). The hashes are
// compared with Lua's ==, not in constant time: they are SHA-256 hashes of
// random codes, and timing that leaks a prefix of the stored hash does not
// help to find a code that hashes to it.
var activateEnrollmentScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local s = redis.call('HMGET', KEYS[1], 'expires_ms', 'epoch')
if not s[1] or now >= tonumber(s[1]) or (s[2] or '0') ~= (redis.call('GET', KEYS[3]) or '0') then
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
// KEYS: session, pending, f, step, wa, rc, epoch, op. ARGV: factor ID,
// step, now (ms), first factor ("1" or "0"), the factor's JSON ("" to
// confirm the pending factor), its WebAuthn state "count|bs|uv" ("" if
// none), then the recovery code hashes, if any. A session or a pending
// factor of an earlier epoch is not found. A pending factor that is a
// WebAuthn credential is refused (statusUnsupported): its credential ID was
// not reserved (see ConfirmFactor), so confirming it could break the
// uniqueness of IDs. Run again for the same call (op), it returns statusOK
// and changes nothing: a retry must not see the session gone and release
// the credential ID it just registered.
var confirmFactorScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[8]) == 1 then
  return 0
end
local now = tonumber(ARGV[3])
local epoch = redis.call('GET', KEYS[7]) or '0'
local s = redis.call('HMGET', KEYS[1], 'expires_ms', 'needs_activation', 'activated', 'first_factor', 'epoch')
if not s[1] or now >= tonumber(s[1]) or (s[5] or '0') ~= epoch then
  return 1
end
if s[2] == '1' and s[3] ~= '1' then
  return 2
end
local js = ARGV[5]
if js == '' then
  local p = redis.call('HMGET', KEYS[2], 'factor', 'expires_ms', 'epoch')
  if not p[1] or not p[2] or now >= tonumber(p[2]) or (p[3] or '0') ~= epoch then
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
redis.call('SET', KEYS[8], '0', 'PX', ` + opKeepMS + `)
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
// count grew (or both counts are zero: an authenticator without a counter),
// and suspends the credential if not.
//
// KEYS: f, wa, att, v, used, susp, epoch, op. ARGV: factor ID, sign count,
// backup state, user verified ("1" or "0"), now (ms), epoch. Returns
// assertionAccepted; assertionRefused (nothing changed) if the factor is
// gone, is not a WebAuthn credential (it has no entry in wa), is suspended
// or the epoch is not the user's; assertionCloned if the count did not
// grow, having suspended the credential at now. Run again for the same call
// (op), it returns what the first run did (see opKey): a retry must not
// take its own count for a clone's. Sign counts are 32-bit, exact as Lua
// numbers.
var acceptAssertionScript = redis.NewScript(`
local done = redis.call('GET', KEYS[8])
if done then
  return done
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 or redis.call('HEXISTS', KEYS[6], ARGV[1]) == 1 or
    (redis.call('GET', KEYS[7]) or '0') ~= ARGV[6] then
  return '` + assertionRefused + `'
end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then
  return '` + assertionRefused + `'
end
local stored = tonumber(string.match(cur, '^(%d+)|'))
local count = tonumber(ARGV[2])
if not stored then
  return '` + assertionRefused + `'
end
if not (count > stored or (count == 0 and stored == 0)) then
  redis.call('HSET', KEYS[6], ARGV[1], ARGV[5])
  redis.call('SET', KEYS[8], '` + assertionCloned + `', 'PX', ` + opKeepMS + `)
  return '` + assertionCloned + `'
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[4], ARGV[5])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[5])
redis.call('SET', KEYS[8], '` + assertionAccepted + `', 'PX', ` + opKeepMS + `)
return '` + assertionAccepted + `'
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
// KEYS: session, f, rc, epoch. ARGV: user ID, now (ms), then the new code
// hashes.
var replaceRecoveryCodesScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local s = redis.call('HMGET', KEYS[1], 'expires_ms', 'user_id', 'needs_activation', 'activated', 'first_factor', 'epoch')
if not s[1] or now >= tonumber(s[1]) or s[2] ~= ARGV[1] or (s[6] or '0') ~= (redis.call('GET', KEYS[4]) or '0') then
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

// putPendingFactorScript stores a pending factor with the user's epoch.
//
// KEYS: p, epoch. ARGV: the factor's JSON, expires (ms), how long Redis
// keeps it (ms).
var putPendingFactorScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'factor', ARGV[1], 'expires_ms', ARGV[2], 'epoch', redis.call('GET', KEYS[2]) or '0')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
`)

// resetUserScript removes a user's factors and their state, recovery codes,
// activation code, attempts and last verification, and increments the
// epoch. Pending factors and sessions are left to expire: the epoch ends
// them.
//
// KEYS: f, step, wa, used, susp, rc, act, att, v, epoch, op. Returns the JSON
// of the factors removed, one a line ("" for none). Run again for the same
// call (op), it returns what the first run did, and changes nothing.
var resetUserScript = redis.NewScript(`
local done = redis.call('GET', KEYS[11])
if done then
  return done
end
local removed = table.concat(redis.call('HVALS', KEYS[1]), '\n')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
redis.call('INCR', KEYS[10])
redis.call('SET', KEYS[11], removed, 'PX', ` + opKeepMS + `)
return removed
`)

// deleteFactorScript removes one confirmed factor and its state, the
// recovery codes with the last factor and the last verification, and
// increments the epoch, which ends the pending factors too.
//
// KEYS: f, step, wa, used, susp, rc, v, epoch, op. ARGV: factor ID. Returns the
// factor's JSON, "" if the user has no such factor (nothing changed). Run
// again for the same call (op), it returns what the first run did.
var deleteFactorScript = redis.NewScript(`
local done = redis.call('GET', KEYS[9])
if done then
  return done
end
local js = redis.call('HGET', KEYS[1], ARGV[1])
if not js then
  return ''
end
for i = 1, 5 do
  redis.call('HDEL', KEYS[i], ARGV[1])
end
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[6])
end
redis.call('DEL', KEYS[7])
redis.call('INCR', KEYS[8])
redis.call('SET', KEYS[9], js, 'PX', ` + opKeepMS + `)
return js
`)

// suspendFactorScript sets or lifts a confirmed factor's suspension.
//
// KEYS: f, susp. ARGV: factor ID, the time of the suspension (ms), "" to
// lift it. Returns statusOK, or statusNotFound if the user has no such
// factor.
var suspendFactorScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 1
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 0
`)

// appendEventScript appends an event to a user's audit chain if the chain's
// head is still the one the event was made after.
//
// KEYS: head, log, times, and for a notifiable event its outbox entry (see
// outbox.go). ARGV: the Seq of the head read ("0" for none), the event's
// Seq, its JSON, its hash, its member in times, the call's nonce, and with
// the outbox entry the event's time (ms). Returns {1} if appended, or if the
// head is this call's event (a client retry of the script: see opKey); {0,
// seq, hash} of the head if another event came first, having changed
// nothing, so that the next attempt need not read it.
var appendEventScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'seq', 'hash', 'op')
local seq = h[1] or '0'
if seq == ARGV[2] and h[3] == ARGV[6] then
  return {1}
end
if seq ~= ARGV[1] then
  return {0, seq, h[2] or ''}
end
redis.call('XADD', KEYS[2], ARGV[2] .. '-0', 'e', ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[5])
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'hash', ARGV[4], 'op', ARGV[6])
if KEYS[4] then
  redis.call('HSET', KEYS[4], 'e', ARGV[3], 'ms', ARGV[7], 'due', ARGV[7], 'attempts', 0, 'claim', 0)
end
return {1}
`)
