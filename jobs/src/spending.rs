//! The wallet spending ledger: how much each Filecoin wallet may spend on retrievals, and how
//! much it has spent and holds reserved ([`SpendingLedger`]).
//!
//! A worker reserves an amount before it retrieves (atomic: `spent + reserved + asked ≤ limit`),
//! records the voucher it is about to send ([`SpendingLedger::record_voucher`]) *before* paying,
//! and settles the real amount once paid (the rest of the reservation is released), or releases
//! the reservation if it does not pay. A worker that dies midway leaves a reservation behind;
//! the sweep ([`SpendingLedger::expire`]) closes it once its TTL passes: released if no voucher
//! was recorded (nothing was paid: a voucher is recorded first, and a released reservation
//! refuses a voucher), settled for the recorded voucher's amount otherwise (it may have been
//! paid) — never left reserved forever, and never released after a payment and spent again.
//!
//! Amounts are attoFIL as `u128`, so this crate needs no big-integer dependency; the filecoin
//! crate converts its `TokenAmount`s (through [`parse_attofil`] or `u128::try_from`). They are
//! bounded by [`MAX_ATTOFIL`], the total FIL supply, which the filecoin crate bounds its amounts by too.
//!
//! In Redis the amounts are decimal strings. Redis's own integers (`INCRBY`) are signed 64-bit,
//! at most about 9.2 FIL in attoFIL, and Lua's numbers are doubles, exact only to 2⁵³ (0.009
//! FIL): neither holds real amounts. So the scripts compare amounts as zero-padded strings of
//! [`DIGITS`] digits (lexicographic order is numeric order at a fixed width) and add and
//! subtract them in limbs of nine decimal digits, each limb and every carry far below 2⁵³, so
//! every step is exact.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use crate::connection::RedisConnection;
use crate::error::StoreError;
use crate::keys::{self, WalletKeys};
use crate::store::now_ms;

/// The most attoFIL any amount may be: the total FIL supply, 2 × 10⁹ FIL; the filecoin crate's
/// `amount::max_amount` is this bound.
pub const MAX_ATTOFIL: u128 = 2_000_000_000 * 1_000_000_000_000_000_000;

/// The width the scripts pad amounts to: four limbs of nine digits, room for the sum of three
/// amounts of up to [`MAX_ATTOFIL`] (28 digits).
pub const DIGITS: usize = 36;

/// How long a closed reservation's record is kept, so that a repeated settle or release (a
/// reply lost, a retry) finds it and does nothing.
const CLOSED_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Expired reservations one sweep closes per wallet, so one script never runs long.
const EXPIRE_BATCH: usize = 1000;

/// Why the ledger refused.
#[derive(Debug, thiserror::Error)]
pub enum SpendingError {
    /// The reservation would take the wallet over its limit.
    #[error("budget_exhausted: asked {asked} attoFIL, limit {limit}, spent {spent}, reserved {reserved}")]
    BudgetExhausted {
        /// The wallet's limit (0 if none was set).
        limit: u128,
        /// Spent so far.
        spent: u128,
        /// Held by open reservations.
        reserved: u128,
        /// What was asked.
        asked: u128,
    },
    /// An amount that is not a decimal number of attoFIL, is negative, or exceeds [`MAX_ATTOFIL`].
    #[error("invalid amount {amount:?}: expected attoFIL from 0 to {MAX_ATTOFIL} ({reason})")]
    InvalidAmount {
        /// What was given.
        amount: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A wallet address that is not 1 to 128 characters of `a-z` and `0-9`.
    #[error("invalid wallet {0:?}: expected 1 to 128 characters of a-z and 0-9")]
    InvalidWallet(String),
    /// A reservation id that is empty or longer than 200 bytes.
    #[error("invalid reservation id {0:?}: expected 1 to 200 bytes")]
    InvalidReservation(String),
    /// No such reservation (never made, or closed long ago).
    #[error("reservation {0} not found")]
    UnknownReservation(String),
    /// The id names a reservation already made with other terms, or already closed.
    #[error("reservation {id} exists already ({state})")]
    ReservationExists {
        /// The reservation.
        id: String,
        /// Its state.
        state: String,
    },
    /// The amount paid or to be paid is above the amount reserved.
    #[error("reservation {id}: {asked} attoFIL exceeds the {reserved} attoFIL reserved")]
    ExceedsReservation {
        /// The reservation.
        id: String,
        /// The amount given.
        asked: u128,
        /// The amount reserved.
        reserved: u128,
    },
    /// The reservation was released (by its holder, or by expiry): it must not be paid from.
    #[error("reservation {0} was released; reserve again before paying")]
    Released(String),
    /// A voucher other than the one recorded for the reservation.
    #[error("reservation {id} has voucher {recorded}, not {given}")]
    VoucherConflict {
        /// The reservation.
        id: String,
        /// The voucher recorded (or settled) for it.
        recorded: String,
        /// The voucher given now.
        given: String,
    },
    /// A voucher was recorded for the reservation, so it may have been paid: it is settled,
    /// never released.
    #[error("reservation {0} has a voucher recorded: settle it, do not release it")]
    VoucherRecorded(String),
    /// Redis failed, or holds something unreadable.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<redis::RedisError> for SpendingError {
    fn from(error: redis::RedisError) -> SpendingError {
        SpendingError::Store(error.into())
    }
}

/// An amount of attoFIL from its decimal string, refusing signs, fractions and anything above
/// [`MAX_ATTOFIL`] (without building a huge integer first).
pub fn parse_attofil(amount: &str) -> Result<u128, SpendingError> {
    let invalid = |reason| SpendingError::InvalidAmount { amount: amount.to_string(), reason };
    if amount.starts_with('-') {
        return Err(invalid("negative"));
    }
    if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("not a decimal integer"));
    }
    // u128 holds 38 digits; longer is an overflow however it parses.
    let value = amount.parse::<u128>().map_err(|_| invalid("overflow"))?;
    checked(value).map_err(|_| invalid("overflow"))
}

/// `amount` if it is at most [`MAX_ATTOFIL`].
fn checked(amount: u128) -> Result<u128, SpendingError> {
    if amount > MAX_ATTOFIL {
        return Err(SpendingError::InvalidAmount { amount: amount.to_string(), reason: "overflow" });
    }
    Ok(amount)
}

fn check_wallet(wallet: &str) -> Result<WalletKeys, SpendingError> {
    let valid =
        (1..=128).contains(&wallet.len()) && wallet.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(WalletKeys::of(wallet))
    } else {
        Err(SpendingError::InvalidWallet(wallet.to_string()))
    }
}

fn check_id(id: &str) -> Result<(), SpendingError> {
    if (1..=200).contains(&id.len()) {
        Ok(())
    } else {
        Err(SpendingError::InvalidReservation(id.to_string()))
    }
}

/// An amount read back from Redis.
fn stored(key: &str, amount: &str) -> Result<u128, SpendingError> {
    parse_attofil(amount).map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: e.to_string() }.into())
}

/// A wallet's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The most it may spend, attoFIL (0 if no limit was set).
    pub limit: u128,
    /// What settled reservations spent, attoFIL.
    pub spent: u128,
    /// What open reservations hold, attoFIL.
    pub reserved: u128,
    /// What reservations refused for want of budget asked for, summed, attoFIL. Not bounded by
    /// [`MAX_ATTOFIL`]: the same amount may be refused again and again (it stops growing at
    /// [`DIGITS`] nines rather than fail a refusal).
    pub refused: u128,
    /// How many reservations were refused for want of budget.
    pub refusals: u64,
}

/// An amount held for one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The wallet paying.
    pub wallet: String,
    /// Its id, chosen by the holder (unique per wallet).
    pub id: String,
    /// The attoFIL held.
    pub amount: u128,
    /// Who holds it (a worker id).
    pub holder: String,
    /// When the sweep closes it if it is still open (ms since the Unix epoch).
    pub expires_at_ms: u64,
}

/// What one sweep ([`SpendingLedger::expire`]) closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Reservations released: no voucher was recorded, so nothing was paid.
    pub released: u64,
    /// Reservations settled for their recorded voucher's amount.
    pub settled: u64,
}

/// Amount arithmetic every script starts with (see the module's documentation).
const ARITHMETIC: &str = r#"
local WIDTH = 36
local function pad(s) return string.rep('0', WIDTH - #s) .. s end
local function limbs(s)
  s = pad(s)
  local t = {}
  for i = 0, 3 do t[i + 1] = tonumber(string.sub(s, i * 9 + 1, i * 9 + 9)) end
  return t
end
local function join(t)
  local s = string.format('%09d%09d%09d%09d', t[1], t[2], t[3], t[4])
  s = string.gsub(s, '^0+', '')
  if s == '' then return '0' end
  return s
end
local function add(a, b)
  local x, y, r, carry = limbs(a), limbs(b), {}, 0
  for i = 4, 1, -1 do
    local v = x[i] + y[i] + carry
    if v >= 1000000000 then r[i] = v - 1000000000; carry = 1 else r[i] = v; carry = 0 end
  end
  if carry ~= 0 then error('amount overflow') end
  return join(r)
end
local function sub(a, b)
  local x, y, r, borrow = limbs(a), limbs(b), {}, 0
  for i = 4, 1, -1 do
    local v = x[i] - y[i] - borrow
    if v < 0 then r[i] = v + 1000000000; borrow = 1 else r[i] = v; borrow = 0 end
  end
  if borrow ~= 0 then error('amount below zero') end
  return join(r)
end
local function le(a, b) return pad(a) <= pad(b) end
-- Closes reservation `id` (record `res`) of the ledger `ledger`: its amount leaves `reserved`,
-- and `actual` (if settled) joins `spent`.
local function close(ledger, expiries, res, id, actual, voucher)
  local amount = redis.call('HGET', res, 'amount')
  local reserved = redis.call('HGET', ledger, 'reserved') or '0'
  redis.call('HSET', ledger, 'reserved', sub(reserved, amount))
  if actual then
    local spent = redis.call('HGET', ledger, 'spent') or '0'
    redis.call('HSET', ledger, 'spent', add(spent, actual))
    redis.call('HSET', res, 'state', 'settled', 'actual', actual, 'voucher', voucher)
  else
    redis.call('HSET', res, 'state', 'released')
  end
  redis.call('ZREM', expiries, id)
  redis.call('PEXPIRE', res, ARGV[#ARGV])
end
"#;

/// KEYS: ledger, expiries, reservation. ARGV: id, amount, holder, expiry (ms), the limit's key.
/// The limit is named in ARGV, not KEYS: Redis checks a script's KEYS as written to, and the
/// worker may only read the limit; it shares the wallet's tag, so its slot.
const RESERVE: &str = r#"
local state = redis.call('HGET', KEYS[3], 'state')
if state then
  local r = redis.call('HMGET', KEYS[3], 'amount', 'holder', 'expires')
  return {'exists', state, r[1], r[2], r[3]}
end
local limit = redis.call('GET', ARGV[5]) or '0'
local spent = redis.call('HGET', KEYS[1], 'spent') or '0'
local reserved = redis.call('HGET', KEYS[1], 'reserved') or '0'
if not le(add(add(spent, reserved), ARGV[2]), limit) then
  -- Counted here, in the refusing script, so that no refusal goes uncounted; a total that
  -- would outgrow the width stays at its largest value rather than turn the refusal into an error.
  local ok, refused = pcall(add, redis.call('HGET', KEYS[1], 'refused') or '0', ARGV[2])
  if not ok then refused = string.rep('9', WIDTH) end
  redis.call('HSET', KEYS[1], 'refused', refused)
  redis.call('HINCRBY', KEYS[1], 'refusals', 1)
  return {'exhausted', limit, spent, reserved}
end
redis.call('HSET', KEYS[1], 'spent', spent, 'reserved', add(reserved, ARGV[2]))
redis.call('HSET', KEYS[3], 'state', 'reserved', 'amount', ARGV[2], 'holder', ARGV[3], 'expires', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return {'reserved'}
"#;

/// KEYS: reservation. ARGV: voucher, amount.
const RECORD_VOUCHER: &str = r#"
local r = redis.call('HMGET', KEYS[1], 'state', 'amount', 'voucher')
local state = r[1]
if not state then return {'unknown'} end
if state == 'released' then return {'released'} end
if state == 'paying' or state == 'settled' then
  if r[3] == ARGV[1] then return {'ok'} end
  return {'conflict', r[3]}
end
if not le(ARGV[2], r[2]) then return {'exceeds', r[2]} end
redis.call('HSET', KEYS[1], 'state', 'paying', 'voucher', ARGV[1], 'voucher_amount', ARGV[2])
return {'ok'}
"#;

/// KEYS: ledger, expiries, reservation. ARGV: id, actual, voucher, kept (ms).
const SETTLE: &str = r#"
local r = redis.call('HMGET', KEYS[3], 'state', 'amount', 'voucher')
local state = r[1]
if not state then return {'unknown'} end
if state == 'released' then return {'released'} end
if (state == 'paying' or state == 'settled') and r[3] ~= ARGV[3] then return {'conflict', r[3]} end
if state == 'settled' then return {'done'} end
if not le(ARGV[2], r[2]) then return {'exceeds', r[2]} end
close(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
return {'settled'}
"#;

/// KEYS: ledger, expiries, reservation. ARGV: id, kept (ms).
const RELEASE: &str = r#"
local state = redis.call('HGET', KEYS[3], 'state')
if not state then return {'unknown'} end
if state == 'paying' then return {'paying'} end
if state ~= 'reserved' then return {'done'} end
close(KEYS[1], KEYS[2], KEYS[3], ARGV[1], nil, nil)
return {'released'}
"#;

/// KEYS: ledger, expiries. ARGV: now (ms), reservation key prefix, batch, kept (ms). The
/// reservation records are named from the prefix: they share the wallet's tag, so its slot.
const EXPIRE: &str = r#"
local released, settled = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local res = ARGV[2] .. id
  local r = redis.call('HMGET', res, 'state', 'voucher', 'voucher_amount')
  if r[1] == 'reserved' then
    close(KEYS[1], KEYS[2], res, id, nil, nil)
    released = released + 1
  elseif r[1] == 'paying' then
    close(KEYS[1], KEYS[2], res, id, r[3], r[2])
    settled = settled + 1
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return {released, settled}
"#;

/// The spending ledgers of every wallet in Redis. Cheap to clone.
#[derive(Clone)]
pub struct SpendingLedger {
    conn: RedisConnection,
}

/// The ledger's scripts, each behind the shared arithmetic.
struct LedgerScripts {
    reserve: Script,
    record_voucher: Script,
    settle: Script,
    release: Script,
    expire: Script,
}

/// Built and hashed once per process, not carried by every (cloned) ledger: a gateway clones
/// its ledger for every request.
static SCRIPTS: LazyLock<LedgerScripts> = LazyLock::new(|| {
    let with_arithmetic = |script: &str| Script::new(&format!("{ARITHMETIC}{script}"));
    LedgerScripts {
        reserve: with_arithmetic(RESERVE),
        record_voucher: with_arithmetic(RECORD_VOUCHER),
        settle: with_arithmetic(SETTLE),
        release: with_arithmetic(RELEASE),
        expire: with_arithmetic(EXPIRE),
    }
});

impl SpendingLedger {
    /// The ledgers in the Redis behind `conn`.
    pub fn new(conn: impl Into<RedisConnection>) -> SpendingLedger {
        SpendingLedger { conn: conn.into() }
    }

    /// Sets `wallet`'s limit to `limit` attoFIL (the admin's user only). A limit below what is
    /// spent and reserved refuses every further reservation; it takes nothing back.
    pub async fn set_limit(&self, wallet: &str, limit: u128) -> Result<(), SpendingError> {
        let keys = check_wallet(wallet)?;
        let limit = checked(limit)?;
        let mut conn = self.conn.clone();
        // Two slots, so two commands: the wallet is listed first, so a limit is never unswept.
        let _: () = conn.sadd(keys::spending_wallets(), wallet).await?;
        let _: () = conn.set(&keys.limit, limit.to_string()).await?;
        Ok(())
    }

    /// Reserves `amount` attoFIL of `wallet` as `id` for `holder`, until `ttl` from now; refused
    /// with [`SpendingError::BudgetExhausted`] if spent, reserved and `amount` together would
    /// exceed the limit. Repeating it with the same terms (a lost reply) returns the reservation
    /// made the first time.
    pub async fn reserve(
        &self,
        wallet: &str,
        id: &str,
        amount: u128,
        holder: &str,
        ttl: Duration,
    ) -> Result<Reservation, SpendingError> {
        let keys = check_wallet(wallet)?;
        check_id(id)?;
        let amount = checked(amount)?;
        let expires_at_ms = now_ms() + ttl.as_millis() as u64;
        let mut conn = self.conn.clone();
        let reply: Vec<String> = SCRIPTS
            .reserve
            .key(&keys.ledger)
            .key(&keys.expiries)
            .key(keys.reservation(id))
            .arg(id)
            .arg(amount.to_string())
            .arg(holder)
            .arg(expires_at_ms)
            .arg(&keys.limit)
            .invoke_async(&mut conn)
            .await?;
        let reservation = |amount, expires_at_ms| Reservation {
            wallet: wallet.to_string(),
            id: id.to_string(),
            amount,
            holder: holder.to_string(),
            expires_at_ms,
        };
        match reply.as_slice() {
            [reserved] if reserved == "reserved" => Ok(reservation(amount, expires_at_ms)),
            [exhausted, limit, spent, reserved] if exhausted == "exhausted" => Err(SpendingError::BudgetExhausted {
                limit: stored(&keys.limit, limit)?,
                spent: stored(&keys.ledger, spent)?,
                reserved: stored(&keys.ledger, reserved)?,
                asked: amount,
            }),
            [exists, state, held, by, expires] if exists == "exists" => {
                let key = keys.reservation(id);
                let same = state == "reserved" && stored(&key, held)? == amount && by == holder;
                if !same {
                    return Err(SpendingError::ReservationExists { id: id.to_string(), state: state.clone() });
                }
                let expires =
                    expires.parse().map_err(|_| StoreError::Corrupt { key, reason: format!("expiry {expires:?}") })?;
                Ok(reservation(amount, expires))
            }
            other => Err(unexpected(&keys.ledger, other)),
        }
    }

    /// Records that voucher `voucher` for `amount` attoFIL is about to pay from reservation `id`
    /// of `wallet`: call it before sending the voucher. From then on the reservation is settled,
    /// never released — by [`SpendingLedger::settle`], or by the sweep for `amount` if the
    /// holder dies. Refused for a released reservation ([`SpendingError::Released`]): its
    /// holder must not pay. Repeating it with the same voucher does nothing.
    pub async fn record_voucher(
        &self,
        wallet: &str,
        id: &str,
        voucher: &str,
        amount: u128,
    ) -> Result<(), SpendingError> {
        let keys = check_wallet(wallet)?;
        check_id(id)?;
        let amount = checked(amount)?;
        let key = keys.reservation(id);
        let mut conn = self.conn.clone();
        let reply: Vec<String> =
            SCRIPTS.record_voucher.key(&key).arg(voucher).arg(amount.to_string()).invoke_async(&mut conn).await?;
        match reply.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            other => Err(refusal(&key, id, voucher, amount, other)),
        }
    }

    /// Settles reservation `id` of `wallet`: `actual` attoFIL (at most the amount reserved),
    /// paid by voucher `voucher`, join what the wallet spent and the rest is released. Whether
    /// this call settled it: settling again with the same voucher does nothing.
    pub async fn settle(&self, wallet: &str, id: &str, actual: u128, voucher: &str) -> Result<bool, SpendingError> {
        let keys = check_wallet(wallet)?;
        check_id(id)?;
        let actual = checked(actual)?;
        let key = keys.reservation(id);
        let mut conn = self.conn.clone();
        let reply: Vec<String> = SCRIPTS
            .settle
            .key(&keys.ledger)
            .key(&keys.expiries)
            .key(&key)
            .arg(id)
            .arg(actual.to_string())
            .arg(voucher)
            .arg(CLOSED_KEPT.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        match reply.as_slice() {
            [settled] if settled == "settled" => Ok(true),
            [done] if done == "done" => Ok(false),
            other => Err(refusal(&key, id, voucher, actual, other)),
        }
    }

    /// Releases reservation `id` of `wallet` unpaid. Whether this call released it: releasing a
    /// closed reservation does nothing. Refused once a voucher was recorded for it
    /// ([`SpendingError::VoucherRecorded`]): it may have been paid, so it is settled instead.
    pub async fn release(&self, wallet: &str, id: &str) -> Result<bool, SpendingError> {
        let keys = check_wallet(wallet)?;
        check_id(id)?;
        let key = keys.reservation(id);
        let mut conn = self.conn.clone();
        let reply: Vec<String> = SCRIPTS
            .release
            .key(&keys.ledger)
            .key(&keys.expiries)
            .key(&key)
            .arg(id)
            .arg(CLOSED_KEPT.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        match reply.as_slice() {
            [released] if released == "released" => Ok(true),
            [done] if done == "done" => Ok(false),
            [paying] if paying == "paying" => Err(SpendingError::VoucherRecorded(id.to_string())),
            [unknown] if unknown == "unknown" => Err(SpendingError::UnknownReservation(id.to_string())),
            other => Err(unexpected(&key, other)),
        }
    }

    /// Closes every wallet's reservations that expired by `now_ms`: released if no voucher was
    /// recorded, settled for the voucher's amount if one was. Any worker may run it; a
    /// reservation is closed once however many run at once.
    pub async fn expire(&self, now_ms: u64) -> Result<Expired, SpendingError> {
        let mut conn = self.conn.clone();
        let wallets: Vec<String> = conn.smembers(keys::spending_wallets()).await?;
        let mut expired = Expired::default();
        for wallet in wallets {
            let keys = check_wallet(&wallet)?;
            loop {
                let (released, settled): (u64, u64) = SCRIPTS
                    .expire
                    .key(&keys.ledger)
                    .key(&keys.expiries)
                    .arg(now_ms)
                    .arg(&keys.reservation_prefix)
                    .arg(EXPIRE_BATCH)
                    .arg(CLOSED_KEPT.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await?;
                expired.released += released;
                expired.settled += settled;
                if released + settled < EXPIRE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(expired)
    }

    /// `wallet`'s limit, what it spent, what it holds reserved and what was refused it.
    pub async fn status(&self, wallet: &str) -> Result<Budget, SpendingError> {
        let keys = check_wallet(wallet)?;
        let mut conn = self.conn.clone();
        let limit: Option<String> = conn.get(&keys.limit).await?;
        let (spent, reserved, refused, refusals): (Option<String>, Option<String>, Option<String>, Option<u64>) =
            redis::cmd("HMGET")
                .arg(&keys.ledger)
                .arg("spent")
                .arg("reserved")
                .arg("refused")
                .arg("refusals")
                .query_async(&mut conn)
                .await?;
        let amount = |key: &str, value: Option<String>| value.map_or(Ok(0), |value| stored(key, &value));
        let refused = match refused {
            None => 0,
            // Up to DIGITS digits, which u128 holds; beyond the supply bound on purpose.
            Some(total) if total.len() <= DIGITS && total.bytes().all(|b| b.is_ascii_digit()) => {
                total.parse().map_err(|_| corrupt(&keys.ledger, &total))?
            }
            Some(total) => return Err(corrupt(&keys.ledger, &total)),
        };
        Ok(Budget {
            limit: amount(&keys.limit, limit)?,
            spent: amount(&keys.ledger, spent)?,
            reserved: amount(&keys.ledger, reserved)?,
            refused,
            refusals: refusals.unwrap_or(0),
        })
    }

    /// The wallets that have a limit, in order.
    pub async fn wallets(&self) -> Result<Vec<String>, SpendingError> {
        let mut conn = self.conn.clone();
        let mut wallets: Vec<String> = conn.smembers(keys::spending_wallets()).await?;
        wallets.sort();
        Ok(wallets)
    }
}

/// The error a voucher or settle script's refusal stands for.
fn refusal(key: &str, id: &str, voucher: &str, asked: u128, reply: &[String]) -> SpendingError {
    match reply {
        [unknown] if unknown == "unknown" => SpendingError::UnknownReservation(id.to_string()),
        [released] if released == "released" => SpendingError::Released(id.to_string()),
        [conflict, recorded] if conflict == "conflict" => SpendingError::VoucherConflict {
            id: id.to_string(),
            recorded: recorded.clone(),
            given: voucher.to_string(),
        },
        [exceeds, reserved] if exceeds == "exceeds" => match stored(key, reserved) {
            Ok(reserved) => SpendingError::ExceedsReservation { id: id.to_string(), asked, reserved },
            Err(corrupt) => corrupt,
        },
        other => unexpected(key, other),
    }
}

/// A refused total that is not a decimal number of at most [`DIGITS`] digits.
fn corrupt(key: &str, total: &str) -> SpendingError {
    StoreError::Corrupt { key: key.to_string(), reason: format!("refused total {total:?}") }.into()
}

fn unexpected(key: &str, reply: &[String]) -> SpendingError {
    StoreError::Corrupt { key: key.to_string(), reason: format!("unexpected script reply {reply:?}") }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_decimal_attofil_within_the_supply() {
        assert_eq!(parse_attofil("5000000000000000000").unwrap(), 5 * 10u128.pow(18));
        assert_eq!(parse_attofil(&MAX_ATTOFIL.to_string()).unwrap(), MAX_ATTOFIL);
        for bad in ["", "-1", "+1", "1.5", "1e18", " 1", &(MAX_ATTOFIL + 1).to_string(), &"9".repeat(60)] {
            assert!(parse_attofil(bad).is_err(), "{bad:?}");
        }
        assert_eq!(MAX_ATTOFIL.to_string().len(), 28);
        assert!(3 * MAX_ATTOFIL < 10u128.pow(DIGITS as u32), "the scripts' width holds every sum");
    }

    #[test]
    fn the_budget_message_names_the_amounts() {
        let error = SpendingError::BudgetExhausted { limit: 10, spent: 4, reserved: 5, asked: 2 };
        assert_eq!(error.to_string(), "budget_exhausted: asked 2 attoFIL, limit 10, spent 4, reserved 5");
    }

    #[test]
    fn wallets_are_safe_in_keys() {
        assert!(check_wallet("f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za").is_ok());
        for bad in ["", "F1ABC", "f1{x}", "f1:x", &"a".repeat(129)] {
            assert!(check_wallet(bad).is_err(), "{bad:?}");
        }
    }
}
