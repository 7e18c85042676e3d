//! The wallet spending ledger against a real `redis-server`: concurrent reservations never
//! exceed the limit, settling and releasing balance the books, expiry releases what was not
//! paid and settles what may have been, amounts beyond 2⁵³ attoFIL are exact, refusals are
//! counted, each role reaches only its part, and the books outlive a restart.

use std::time::Duration;

use shoal_jobs::keys::{self, RedisRole};
use shoal_jobs::{now_ms, Budget, Fsync, RedisConnection, RedisServer, SpendingError, SpendingLedger};

/// One FIL in attoFIL.
const FIL: u128 = 1_000_000_000_000_000_000;
const WALLET: &str = "f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za";
const TTL: Duration = Duration::from_secs(60);

async fn ledger(server: &RedisServer, role: RedisRole) -> SpendingLedger {
    SpendingLedger::new(RedisConnection::open(&[server.url_for(role)]).await.unwrap())
}

fn budget(limit: u128, spent: u128, reserved: u128) -> Budget {
    Budget { limit, spent, reserved, refused: 0, refusals: 0 }
}

#[tokio::test]
async fn concurrent_reservations_never_exceed_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    ledger(&server, RedisRole::Admin).await.set_limit(WALLET, 151 * FIL).await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..4 {
        workers.push(ledger(&server, RedisRole::Worker).await);
    }
    let price = 3 * FIL;
    let results = futures::future::join_all((0..100).map(|n| {
        let worker = workers[n % workers.len()].clone();
        async move { worker.reserve(WALLET, &format!("r{n}"), price, "w1", TTL).await }
    }))
    .await;
    let granted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(granted, 50, "151 FIL hold 50 reservations of 3 FIL");
    for result in results.iter().filter(|r| r.is_err()) {
        match result {
            Err(SpendingError::BudgetExhausted { limit, spent, reserved, asked }) => {
                assert_eq!((*limit, *spent, *asked), (151 * FIL, 0, price));
                assert!(*reserved + price > 151 * FIL);
            }
            other => panic!("{other:?}"),
        }
    }
    let status = workers[0].status(WALLET).await.unwrap();
    assert_eq!(status, Budget { refused: 50 * price, refusals: 50, ..budget(151 * FIL, 0, 150 * FIL) });
    let refused = workers[0].reserve(WALLET, "more", 2 * FIL, "w1", TTL).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("budget_exhausted: asked {} attoFIL, limit {}, spent 0, reserved {}", 2 * FIL, 151 * FIL, 150 * FIL)
    );
}

#[tokio::test]
async fn settling_spends_the_actual_amount_once_and_releases_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    ledger(&server, RedisRole::Admin).await.set_limit(WALLET, 10 * FIL).await.unwrap();
    let worker = ledger(&server, RedisRole::Worker).await;
    // 5 FIL and more are far beyond 2^53 attoFIL (about 0.009 FIL): the arithmetic is exact.
    let odd = 5 * FIL + 123_456_789_012_345_678;
    let reservation = worker.reserve(WALLET, "r1", odd, "w1", TTL).await.unwrap();
    assert_eq!(reservation.amount, odd);
    let again = worker.reserve(WALLET, "r1", odd, "w1", TTL).await.unwrap();
    assert_eq!(again, reservation, "a repeated reserve returns the first");
    assert!(matches!(worker.reserve(WALLET, "r1", FIL, "w1", TTL).await, Err(SpendingError::ReservationExists { .. })));
    assert_eq!(worker.status(WALLET).await.unwrap(), budget(10 * FIL, 0, odd));

    assert!(matches!(
        worker.settle(WALLET, "r1", odd + 1, "v1").await,
        Err(SpendingError::ExceedsReservation { asked, reserved, .. }) if asked == odd + 1 && reserved == odd
    ));
    let actual = 2 * FIL + 1;
    worker.record_voucher(WALLET, "r1", "v1", actual).await.unwrap();
    assert!(matches!(worker.release(WALLET, "r1").await, Err(SpendingError::VoucherRecorded(_))));
    assert!(worker.settle(WALLET, "r1", actual, "v1").await.unwrap());
    assert_eq!(worker.status(WALLET).await.unwrap(), budget(10 * FIL, actual, 0));
    assert!(!worker.settle(WALLET, "r1", actual, "v1").await.unwrap(), "settling twice is a no-op");
    assert!(!worker.settle(WALLET, "r1", 1, "v1").await.unwrap());
    assert!(matches!(worker.settle(WALLET, "r1", actual, "v2").await, Err(SpendingError::VoucherConflict { .. })));
    assert!(!worker.release(WALLET, "r1").await.unwrap(), "a settled reservation stays settled");
    assert_eq!(worker.status(WALLET).await.unwrap(), budget(10 * FIL, actual, 0));

    // What the settle released is available again: 10 FIL - (2 FIL + 1) remain.
    let rest = 10 * FIL - actual;
    assert!(matches!(
        worker.reserve(WALLET, "r2", rest + 1, "w1", TTL).await,
        Err(SpendingError::BudgetExhausted { .. })
    ));
    worker.reserve(WALLET, "r2", rest, "w1", TTL).await.unwrap();
    assert!(worker.release(WALLET, "r2").await.unwrap());
    assert!(!worker.release(WALLET, "r2").await.unwrap());
    assert!(matches!(worker.record_voucher(WALLET, "r2", "v3", 1).await, Err(SpendingError::Released(_))));
    assert!(matches!(worker.settle(WALLET, "r2", 1, "v3").await, Err(SpendingError::Released(_))));
    assert!(matches!(worker.settle(WALLET, "nope", 1, "v3").await, Err(SpendingError::UnknownReservation(_))));
    let refused = Budget { refused: rest + 1, refusals: 1, ..budget(10 * FIL, actual, 0) };
    assert_eq!(worker.status(WALLET).await.unwrap(), refused, "the one refusal is counted, exactly");
}

#[tokio::test]
async fn expiry_releases_unpaid_reservations_and_settles_paid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    ledger(&server, RedisRole::Admin).await.set_limit(WALLET, 100 * FIL).await.unwrap();
    let worker = ledger(&server, RedisRole::Worker).await;
    worker.reserve(WALLET, "unpaid", 7 * FIL, "w1", Duration::from_millis(1)).await.unwrap();
    worker.reserve(WALLET, "paid", 9 * FIL, "w1", Duration::from_millis(1)).await.unwrap();
    worker.reserve(WALLET, "alive", 11 * FIL, "w2", TTL).await.unwrap();
    // The holder of `paid` records its voucher, pays, and dies before settling.
    worker.record_voucher(WALLET, "paid", "v-paid", 4 * FIL).await.unwrap();

    let expired = worker.expire(now_ms() + 1000).await.unwrap();
    assert_eq!((expired.released, expired.settled), (1, 1));
    assert_eq!(worker.status(WALLET).await.unwrap(), budget(100 * FIL, 4 * FIL, 11 * FIL));
    // Nothing is closed twice, and the late holders find their reservations closed.
    let again = worker.expire(now_ms() + 1000).await.unwrap();
    assert_eq!((again.released, again.settled), (0, 0));
    assert!(matches!(worker.record_voucher(WALLET, "unpaid", "v", FIL).await, Err(SpendingError::Released(_))));
    assert!(!worker.settle(WALLET, "paid", 4 * FIL, "v-paid").await.unwrap());
    assert_eq!(worker.status(WALLET).await.unwrap(), budget(100 * FIL, 4 * FIL, 11 * FIL));
}

#[tokio::test]
async fn workers_keep_the_books_and_only_the_admin_sets_limits() {
    use redis::AsyncCommands;
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let worker = ledger(&server, RedisRole::Worker).await;
    assert!(matches!(worker.set_limit(WALLET, FIL).await, Err(SpendingError::Store(_))));
    let mut raw = redis::Client::open(server.url_for(RedisRole::Worker))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let wallet = keys::WalletKeys::of(WALLET);
    let written: redis::RedisResult<()> = raw.set(&wallet.limit, "1").await;
    assert_eq!(written.unwrap_err().code(), Some("NOPERM"));
    ledger(&server, RedisRole::Admin).await.set_limit(WALLET, FIL).await.unwrap();
    worker.reserve(WALLET, "r1", FIL, "w1", TTL).await.unwrap();
    assert!(worker.settle(WALLET, "r1", FIL, "v1").await.unwrap());
    assert_eq!(worker.expire(now_ms()).await.unwrap().released, 0);
    for role in [RedisRole::Gateway, RedisRole::Verifier] {
        let other = ledger(&server, role).await;
        assert!(matches!(other.reserve(WALLET, "r2", 1, "x", TTL).await, Err(SpendingError::Store(_))), "{role:?}");
    }
    // The gateway reads the books for /metrics, and only reads them.
    let gateway = ledger(&server, RedisRole::Gateway).await;
    assert_eq!(gateway.wallets().await.unwrap(), [WALLET]);
    assert_eq!(gateway.status(WALLET).await.unwrap(), budget(FIL, FIL, 0));
    let mut raw = redis::Client::open(server.url_for(RedisRole::Gateway))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let written: redis::RedisResult<()> = raw.hset(&wallet.ledger, "spent", "0").await;
    assert_eq!(written.unwrap_err().code(), Some("NOPERM"));
    let read: redis::RedisResult<Vec<(String, String)>> = raw.hgetall(wallet.reservation("r1")).await;
    assert_eq!(read.unwrap_err().code(), Some("NOPERM"), "reservations are the workers' business");
}

#[tokio::test]
async fn refusals_are_counted_per_wallet_and_wallets_with_limits_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let admin = ledger(&server, RedisRole::Admin).await;
    assert!(admin.wallets().await.unwrap().is_empty());
    let other = "f1other";
    admin.set_limit(WALLET, 2 * FIL).await.unwrap();
    admin.set_limit(other, FIL).await.unwrap();
    assert_eq!(admin.wallets().await.unwrap(), [WALLET, other], "sorted");
    let worker = ledger(&server, RedisRole::Worker).await;
    worker.reserve(WALLET, "r1", FIL, "w1", TTL).await.unwrap();
    // Amounts beyond 2^53 attoFIL, refused twice: the sum is exact.
    let odd = FIL + 987_654_321_987_654_321;
    for id in ["r2", "r3"] {
        assert!(matches!(worker.reserve(WALLET, id, odd, "w1", TTL).await, Err(SpendingError::BudgetExhausted { .. })));
    }
    assert_eq!(
        worker.status(WALLET).await.unwrap(),
        Budget { refused: 2 * odd, refusals: 2, ..budget(2 * FIL, 0, FIL) }
    );
    assert_eq!(worker.status(other).await.unwrap(), budget(FIL, 0, 0), "another wallet's books are apart");
    // Refused totals may pass the supply bound (the same amount refused again and again).
    for id in ["big1", "big2"] {
        assert!(worker.reserve(other, id, shoal_jobs::MAX_ATTOFIL, "w1", TTL).await.is_err());
    }
    let status = worker.status(other).await.unwrap();
    assert_eq!((status.refused, status.refusals), (2 * shoal_jobs::MAX_ATTOFIL, 2));
    // A wallet never limited has empty books and refuses everything, counting it.
    assert!(worker.reserve("f1never", "r1", 1, "w1", TTL).await.is_err());
    assert_eq!(worker.status("f1never").await.unwrap(), Budget { refused: 1, refusals: 1, ..budget(0, 0, 0) });
}

#[tokio::test]
async fn the_books_outlive_a_crash_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start(dir.path(), Fsync::Always).unwrap();
    ledger(&server, RedisRole::Admin).await.set_limit(WALLET, 1_000_000 * FIL).await.unwrap();
    let worker = ledger(&server, RedisRole::Worker).await;
    worker.reserve(WALLET, "r1", 5 * FIL, "w1", TTL).await.unwrap();
    worker.reserve(WALLET, "r2", 3 * FIL, "w1", TTL).await.unwrap();
    worker.record_voucher(WALLET, "r2", "v2", 2 * FIL).await.unwrap();
    assert!(worker.settle(WALLET, "r1", 4 * FIL + 7, "v1").await.unwrap());
    server.kill();
    server.restart().unwrap();
    let worker = ledger(&server, RedisRole::Worker).await;
    assert_eq!(worker.status(WALLET).await.unwrap(), budget(1_000_000 * FIL, 4 * FIL + 7, 3 * FIL));
    assert!(!worker.settle(WALLET, "r1", 4 * FIL + 7, "v1").await.unwrap());
    assert!(matches!(worker.release(WALLET, "r2").await, Err(SpendingError::VoucherRecorded(_))));
    assert!(worker.settle(WALLET, "r2", 2 * FIL, "v2").await.unwrap());
    assert_eq!(worker.status(WALLET).await.unwrap(), budget(1_000_000 * FIL, 6 * FIL + 7, 0));
}
