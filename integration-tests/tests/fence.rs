//! The resource-side fence kit (`lock-fence`) against a real PostgreSQL server (started
//! here in a temp dir on a free loopback port, stopped by PID at the end) and real
//! SQLite files: stale tokens refused with both tokens, equal tokens accepted, rolled
//! back transactions leave the fence alone, the `fence_token` column form, typed errors
//! for bad input, a paused holder of a real lock refused by the database, and a stress
//! of 32 tasks × 200 fenced transactions with interleaved tokens from two holders whose
//! committed writes are checked in the table afterwards; the read-write form
//! (`fenced_read` / `fenced_write`: the rule, a real `RwLock`'s stale writer refused
//! after a newer reader, a stress of mixed accesses checked in commit order) and
//! per-slot fencing of real semaphore permits.
//!
//! The same cases run on both databases: [`cases!`] expands them per driver.

use fencelock::ErrorKind;
use fencelock_integration_tests::{
    async_trial, run_main,
    servers::{self, PgServer},
    TestResult,
};
use libtest_mimic::Trial;
use lock_fence::{sqlx, Error, FenceColumn, FencingToken, StaleToken};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    any::Any,
    collections::BTreeSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Tasks and transactions per task of the stress case.
const TASKS: u64 = 32;
const WRITES: u64 = 200;

fn main() {
    // Parse the arguments before the server starts: a bad flag exits at once.
    let _ = libtest_mimic::Arguments::from_args();
    let pg = if servers::require(PgServer::available(), "PostgreSQL (initdb, postgres)") {
        match PgServer::start() {
            Ok(pg) => Some(Arc::new(pg)),
            Err(e) if servers::ci() => panic!("PostgreSQL is required under CI: {e}"),
            Err(e) => {
                eprintln!("skipping the PostgreSQL cases: cannot start postgres: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut trials = sqlite::trials(Arc::new(()));
    if let Some(pg) = &pg {
        eprintln!("{} on port {}", pg.version(), pg.port());
        trials.extend(postgres::trials(pg.clone()));
    }
    run_main(trials, move || drop(pg));
}

/// Keeps a fresh database alive (a temp dir) while a case runs.
type Keep = Box<dyn Any + Send>;

/// A fresh SQLite file in WAL mode in its own temp dir.
async fn fresh_sqlite(
    _: Arc<()>,
) -> Result<(sqlx::SqlitePool, Keep), Box<dyn std::error::Error + Send + Sync>> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let dir = tempfile::Builder::new()
        .prefix("fencelock-sqlite-")
        .tempdir()?;
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("fence.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(60));
    let pool = SqlitePoolOptions::new()
        .max_connections(TASKS as u32)
        .connect_with(options)
        .await?;
    Ok((pool, Box::new(dir)))
}

/// A fresh database on the shared server.
async fn fresh_postgres(
    pg: Arc<PgServer>,
) -> Result<(sqlx::PgPool, Keep), Box<dyn std::error::Error + Send + Sync>> {
    use sqlx::{postgres::PgPoolOptions, Connection};
    let db = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&pg.url("postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(TASKS as u32)
        .acquire_timeout(Duration::from_secs(60))
        .connect(&pg.url(&db))
        .await?;
    Ok((pool, Box::new(())))
}

async fn begin_postgres(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Error> {
    Ok(pool.begin().await?)
}

/// The stale refusal `r` must be, or an error saying what came instead.
fn expect_stale<T: std::fmt::Debug>(
    r: Result<T, Error>,
    presented: u64,
    highest: u64,
) -> TestResult {
    match r {
        Err(Error::Stale(s))
            if s.presented == FencingToken::new(presented)
                && s.highest == FencingToken::new(highest) =>
        {
            Ok(())
        }
        other => Err(format!("expected stale {presented} < {highest}, got {other:?}").into()),
    }
}

macro_rules! cases {
    ($module:ident, $db:ty, $label:literal, $src:ty, $fresh:path, $begin:path, $serial:literal) => {
        mod $module {
            use super::*;
            use lock_fence::$module as fence;

            type Pool = sqlx::Pool<$db>;

            /// Every case, named `<case>_<database>`.
            pub(crate) fn trials(src: $src) -> Vec<Trial> {
                macro_rules! trial {
                    ($case:ident) => {{
                        let src = src.clone();
                        async_trial(concat!(stringify!($case), "_", $label), move || async move {
                            let (pool, _keep) = $fresh(src).await?;
                            let outcome = $case(&pool).await;
                            pool.close().await;
                            outcome
                        })
                    }};
                }
                vec![
                    trial!(stale_token_is_refused_with_both_tokens),
                    trial!(equal_token_is_accepted_for_many_writes),
                    trial!(rolled_back_transaction_does_not_advance_the_fence),
                    trial!(fence_column_refuses_stale_tokens_and_reports_missing_rows),
                    trial!(bad_tokens_names_and_missing_table_are_typed_errors),
                    trial!(paused_holder_of_a_real_lock_is_refused_by_the_database),
                    trial!(concurrent_holders_never_commit_a_stale_write),
                    trial!(read_write_fence_follows_the_mode_aware_rule),
                    trial!(stale_writer_of_a_real_rw_lock_is_refused_after_a_newer_reader),
                    trial!(semaphore_permits_are_fenced_per_slot),
                    trial!(concurrent_readers_and_writers_commit_in_rule_order),
                ]
            }

            async fn setup(pool: &Pool) -> TestResult {
                fence::create_fences_table(&mut *pool.acquire().await?).await?;
                sqlx::query(concat!(
                    "CREATE TABLE writes (id ",
                    $serial,
                    " PRIMARY KEY, token BIGINT NOT NULL, task BIGINT NOT NULL, seq BIGINT NOT NULL)"
                ))
                .execute(pool)
                .await?;
                Ok(())
            }

            /// One fenced transaction that inserts a row into `writes`, committed.
            async fn write(pool: &Pool, name: &str, token: u64, task: u64, seq: u64) -> Result<(), Error> {
                let mut tx = $begin(pool).await?;
                fence::fenced(&mut tx, name, FencingToken::new(token)).await?;
                insert(&mut tx, token, task, seq).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert(tx: &mut sqlx::Transaction<'static, $db>, token: u64, task: u64, seq: u64) -> Result<(), Error> {
                sqlx::query("INSERT INTO writes (token, task, seq) VALUES ($1, $2, $3)")
                    .bind(token as i64)
                    .bind(task as i64)
                    .bind(seq as i64)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// The committed writes, in insertion (= fence) order: (token, task, seq).
            async fn committed(pool: &Pool) -> Result<Vec<(i64, i64, i64)>, Error> {
                Ok(sqlx::query_as("SELECT token, task, seq FROM writes ORDER BY id")
                    .fetch_all(pool)
                    .await?)
            }

            async fn highest(pool: &Pool, name: &str) -> Result<Option<FencingToken>, Error> {
                fence::highest(&mut *pool.acquire().await?, name).await
            }

            async fn stale_token_is_refused_with_both_tokens(pool: &Pool) -> TestResult {
                setup(pool).await?;
                write(pool, "order/1", 34, 0, 0).await?;
                let refused = write(pool, "order/1", 33, 0, 1).await;
                expect_stale(refused, 33, 34)?;
                // Names are independent.
                write(pool, "order/2", 1, 0, 2).await?;
                let as_core = lock_core_error(write(pool, "order/1", 2, 0, 3).await);
                assert_eq!(as_core, Some(ErrorKind::StaleToken));
                assert_eq!(committed(pool).await?, vec![(34, 0, 0), (1, 0, 2)]);
                assert_eq!(highest(pool, "order/1").await?, Some(FencingToken::new(34)));
                Ok(())
            }

            fn lock_core_error(r: Result<(), Error>) -> Option<ErrorKind> {
                r.err().map(|e| fencelock::Error::from(e).kind())
            }

            async fn equal_token_is_accepted_for_many_writes(pool: &Pool) -> TestResult {
                setup(pool).await?;
                for seq in 0..5 {
                    write(pool, "report", 7, 0, seq).await?;
                }
                assert_eq!(committed(pool).await?.len(), 5);
                write(pool, "report", 8, 1, 0).await?;
                expect_stale(write(pool, "report", 7, 0, 5).await, 7, 8)?;
                assert_eq!(highest(pool, "report").await?, Some(FencingToken::new(8)));
                Ok(())
            }

            async fn rolled_back_transaction_does_not_advance_the_fence(pool: &Pool) -> TestResult {
                setup(pool).await?;
                write(pool, "job", 5, 0, 0).await?;
                // Explicit rollback.
                let mut tx = $begin(pool).await?;
                fence::fenced(&mut tx, "job", FencingToken::new(9)).await?;
                insert(&mut tx, 9, 1, 0).await?;
                tx.rollback().await?;
                // Dropped without commit.
                let mut tx = $begin(pool).await?;
                fence::fenced(&mut tx, "job", FencingToken::new(10)).await?;
                insert(&mut tx, 10, 2, 0).await?;
                drop(tx);
                // A first fence of a new name, rolled back: no row remains.
                let mut tx = $begin(pool).await?;
                fence::fenced(&mut tx, "fresh", FencingToken::new(3)).await?;
                tx.rollback().await?;
                assert_eq!(highest(pool, "job").await?, Some(FencingToken::new(5)));
                assert_eq!(highest(pool, "fresh").await?, None);
                write(pool, "job", 6, 3, 0).await?;
                assert_eq!(committed(pool).await?, vec![(5, 0, 0), (6, 3, 0)]);
                Ok(())
            }

            async fn fence_column_refuses_stale_tokens_and_reports_missing_rows(pool: &Pool) -> TestResult {
                let col = FenceColumn::new("accounts", "id")?;
                sqlx::query("CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)")
                    .execute(pool)
                    .await?;
                sqlx::query(&col.add_column_sql()).execute(pool).await?;
                sqlx::query("INSERT INTO accounts (id, balance) VALUES (1, 100)").execute(pool).await?;
                let charge = |token: u64, id: i64, amount: i64| {
                    let col = &col;
                    async move {
                        let mut tx = $begin(pool).await?;
                        fence::fenced_row(&mut tx, col, id, FencingToken::new(token)).await?;
                        sqlx::query("UPDATE accounts SET balance = balance - $1 WHERE id = $2")
                            .bind(amount)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Ok::<(), Error>(())
                    }
                };
                charge(5, 1, 30).await?;
                charge(5, 1, 10).await?; // the same holder again
                expect_stale(charge(4, 1, 50).await, 4, 5)?;
                match charge(9, 2, 1).await {
                    Err(Error::NoRow { key, .. }) if key == "2" => {}
                    other => return Err(format!("expected NoRow, got {other:?}").into()),
                }
                let (balance, token): (i64, i64) =
                    sqlx::query_as("SELECT balance, fence_token FROM accounts WHERE id = 1")
                        .fetch_one(pool)
                        .await?;
                assert_eq!((balance, token), (60, 5));
                Ok(())
            }

            async fn bad_tokens_names_and_missing_table_are_typed_errors(pool: &Pool) -> TestResult {
                let mut tx = $begin(pool).await?;
                let missing = fence::fenced(&mut tx, "n", FencingToken::new(1)).await;
                assert!(matches!(missing, Err(Error::Database { .. })), "{missing:?}");
                drop(tx);
                setup(pool).await?;
                let mut tx = $begin(pool).await?;
                let big = fence::fenced(&mut tx, "n", FencingToken::new(u64::MAX)).await;
                assert!(matches!(big, Err(Error::TokenOutOfRange { .. })), "{big:?}");
                let empty = fence::fenced(&mut tx, "", FencingToken::new(1)).await;
                assert!(matches!(empty, Err(Error::InvalidInput { .. })), "{empty:?}");
                // The largest storable token works.
                fence::fenced(&mut tx, "n", FencingToken::new(i64::MAX as u64)).await?;
                tx.commit().await?;
                assert_eq!(highest(pool, "n").await?, Some(FencingToken::new(i64::MAX as u64)));
                Ok(())
            }

            async fn paused_holder_of_a_real_lock_is_refused_by_the_database(pool: &Pool) -> TestResult {
                setup(pool).await?;
                let locks = fencelock::connect("memory://fence-test").await?;
                let paused = locks.acquire("order/7").await?;
                // The holder stalls past its lease; the lock passes on.
                paused.lease().close().await?;
                let fresh = locks.acquire("order/7").await?;
                assert!(fresh.token() > paused.token());
                write(pool, "order/7", fresh.token().get(), 1, 0).await?;
                let late = write(pool, "order/7", paused.token().get(), 0, 0).await;
                expect_stale(late, paused.token().get(), fresh.token().get())?;
                assert_eq!(committed(pool).await?.len(), 1);
                fresh.release().await?;
                locks.close().await?;
                Ok(())
            }

            /// 32 tasks × 200 transactions. Two holders take the lock in turns: each
            /// epoch, holder A's token is `2e` and B's is `2e + 1`; tasks read the epoch,
            /// pause, and may present a token of an epoch that has since passed (a holder
            /// that paused past its lease). Every transaction pauses at random between
            /// its fence, its write and its commit. Afterwards the table must show the
            /// committed tokens in non-decreasing order and exactly the accepted writes.
            async fn concurrent_holders_never_commit_a_stale_write(pool: &Pool) -> TestResult {
                setup(pool).await?;
                let epoch = Arc::new(AtomicU64::new(1));
                let started = Instant::now();
                let mut tasks = Vec::new();
                for task in 0..TASKS {
                    let (pool, epoch) = (pool.clone(), epoch.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut rng = StdRng::seed_from_u64(task);
                        let mut accepted = Vec::new();
                        let mut refused = 0u64;
                        for seq in 0..WRITES {
                            let e = epoch.load(Ordering::SeqCst);
                            if rng.gen_ratio(1, 8) {
                                epoch.fetch_max(e + 1, Ordering::SeqCst);
                            }
                            let token = 2 * e + task % 2;
                            pause(&mut rng).await;
                            let mut tx = $begin(&pool).await?;
                            match fence::fenced(&mut tx, "stress", FencingToken::new(token)).await {
                                Ok(()) => {
                                    pause(&mut rng).await;
                                    insert(&mut tx, token, task, seq).await?;
                                    pause(&mut rng).await;
                                    tx.commit().await?;
                                    accepted.push((token as i64, task as i64, seq as i64));
                                }
                                Err(Error::Stale(StaleToken { presented, highest, .. })) => {
                                    assert_eq!(presented.get(), token);
                                    assert!(highest > presented, "{highest} <= {presented}");
                                    refused += 1;
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        Ok::<_, Error>((accepted, refused))
                    }));
                }
                let mut accepted = BTreeSet::new();
                let mut refused = 0;
                for task in tasks {
                    let (a, r) = task.await??;
                    accepted.extend(a);
                    refused += r;
                }
                let rows = committed(pool).await?;
                let stale: Vec<_> = rows.windows(2).filter(|w| w[1].0 < w[0].0).collect();
                assert!(stale.is_empty(), "stale writes committed after newer ones: {stale:?}");
                assert_eq!(rows.iter().copied().collect::<BTreeSet<_>>(), accepted);
                assert_eq!(rows.len(), accepted.len(), "no write committed twice");
                assert_eq!(accepted.len() as u64 + refused, TASKS * WRITES);
                assert!(refused > 0 && !accepted.is_empty(), "{refused} refused");
                let last = rows.last().map(|r| r.0 as u64);
                assert_eq!(highest(pool, "stress").await?.map(FencingToken::get), last);
                eprintln!(
                    "{}: {} fenced transactions in {:?}: {} committed, {} stale refused",
                    $label,
                    TASKS * WRITES,
                    started.elapsed(),
                    accepted.len(),
                    refused
                );
                Ok(())
            }

            async fn rw(pool: &Pool, write: bool, name: &str, token: u64) -> Result<(), Error> {
                let mut tx = $begin(pool).await?;
                let token = FencingToken::new(token);
                if write {
                    fence::fenced_write(&mut tx, name, token).await?;
                } else {
                    fence::fenced_read(&mut tx, name, token).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn highest_rw(pool: &Pool, name: &str) -> Result<Option<(u64, u64)>, Error> {
                let found = fence::highest_rw(&mut *pool.acquire().await?, name).await?;
                Ok(found.map(|(any, write)| (any.get(), write.get())))
            }

            /// Readers share (any order among themselves), a write needs a token ≥
            /// every accepted one, a read one ≥ the highest write; a rolled-back read
            /// raises nothing.
            async fn read_write_fence_follows_the_mode_aware_rule(pool: &Pool) -> TestResult {
                fence::create_rw_fences_table(&mut *pool.acquire().await?).await?;
                let (read, write) = (false, true);
                rw(pool, read, "doc", 5).await?;
                rw(pool, read, "doc", 4).await?; // readers are not ordered
                assert_eq!(highest_rw(pool, "doc").await?, Some((5, 0)));
                expect_stale(rw(pool, write, "doc", 4).await, 4, 5)?; // older than a read
                rw(pool, write, "doc", 7).await?;
                expect_stale(rw(pool, read, "doc", 6).await, 6, 7)?; // older than a write
                rw(pool, read, "doc", 9).await?;
                expect_stale(rw(pool, write, "doc", 8).await, 8, 9)?;
                rw(pool, write, "doc", 9).await?; // equal: the same holder again
                assert_eq!(highest_rw(pool, "doc").await?, Some((9, 9)));
                let mut tx = $begin(pool).await?;
                fence::fenced_read(&mut tx, "doc", FencingToken::new(20)).await?;
                tx.rollback().await?;
                rw(pool, write, "doc", 10).await?;
                // The first access of a name may be a read or a write.
                rw(pool, read, "other", 3).await?;
                rw(pool, write, "third", 3).await?;
                assert_eq!(highest_rw(pool, "third").await?, Some((3, 3)));
                Ok(())
            }

            /// A writer of a real read-write lock stalls past its lease; a reader takes
            /// the lock and reads through the fence; the stale writer's write is refused
            /// by the database, naming the reader's token.
            async fn stale_writer_of_a_real_rw_lock_is_refused_after_a_newer_reader(pool: &Pool) -> TestResult {
                fence::create_rw_fences_table(&mut *pool.acquire().await?).await?;
                let locks = fencelock::connect("memory://rw-fence-test").await?;
                let writers = locks.rw_lock("doc").await?;
                let stale = writers.write().await?;
                rw(pool, true, "doc", stale.token().get()).await?;
                writers.lease().close().await?; // paused past its lease
                let readers = locks.rw_lock("doc").await?;
                let reader = readers.read().await?;
                assert!(reader.token() > stale.token());
                rw(pool, false, "doc", reader.token().get()).await?;
                let late = rw(pool, true, "doc", stale.token().get()).await;
                expect_stale(late, stale.token().get(), reader.token().get())?;
                reader.release().await?;
                locks.close().await?;
                Ok(())
            }

            /// Permits fence per slot (`name#slot`): a stalled permit holder is refused
            /// once the next holder of its slot has written; the other slot's holder is
            /// not affected.
            async fn semaphore_permits_are_fenced_per_slot(pool: &Pool) -> TestResult {
                setup(pool).await?;
                let locks = fencelock::connect("memory://sem-fence-test").await?;
                let first = locks.semaphore("workers", 2).await?;
                let paused = first.acquire().await?;
                // Another process: a client of its own (a client's primitives share
                // its lease).
                let elsewhere = fencelock::connect("memory://sem-fence-test").await?;
                let second = elsewhere.semaphore("workers", 2).await?;
                let other = second.acquire().await?;
                assert_ne!(paused.slot(), other.slot());
                write(pool, &paused.fence_key(), paused.token().get(), 0, 0).await?;
                write(pool, &other.fence_key(), other.token().get(), 1, 0).await?;
                first.lease().close().await?; // paused past its lease: its slot frees
                let third = locks.semaphore("workers", 2).await?;
                let next = third.acquire().await?;
                assert_eq!(next.slot(), paused.slot(), "the freed slot is taken");
                write(pool, &next.fence_key(), next.token().get(), 2, 0).await?;
                let late = write(pool, &paused.fence_key(), paused.token().get(), 0, 1).await;
                expect_stale(late, paused.token().get(), next.token().get())?;
                write(pool, &other.fence_key(), other.token().get(), 1, 1).await?;
                assert_eq!(committed(pool).await?.len(), 4);
                other.release().await?;
                next.release().await?;
                locks.close().await?;
                elsewhere.close().await?;
                Ok(())
            }

            /// 16 tasks × 100 transactions, a third of them writes, tokens from epochs
            /// that move on under them (some stale), random pauses between the fence, the
            /// logged access and the commit. In commit order (the log's ids), every
            /// committed write's token is ≥ every earlier committed token, and every
            /// committed read's ≥ every earlier committed write's.
            async fn concurrent_readers_and_writers_commit_in_rule_order(pool: &Pool) -> TestResult {
                fence::create_rw_fences_table(&mut *pool.acquire().await?).await?;
                setup(pool).await?; // `writes` is the access log: task 0 reads, 1 writes
                let epoch = Arc::new(AtomicU64::new(1));
                let mut tasks = Vec::new();
                for task in 0..16u64 {
                    let (pool, epoch) = (pool.clone(), epoch.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut rng = StdRng::seed_from_u64(100 + task);
                        let mut refused = 0u64;
                        for seq in 0..100u64 {
                            let e = epoch.load(Ordering::SeqCst);
                            if rng.gen_ratio(1, 6) {
                                epoch.fetch_max(e + 1, Ordering::SeqCst);
                            }
                            let is_write = rng.gen_ratio(1, 3);
                            let token = FencingToken::new(4 * e + task % 4);
                            pause(&mut rng).await;
                            let mut tx = $begin(&pool).await?;
                            let fenced = if is_write {
                                fence::fenced_write(&mut tx, "rw", token).await
                            } else {
                                fence::fenced_read(&mut tx, "rw", token).await
                            };
                            match fenced {
                                Ok(()) => {
                                    pause(&mut rng).await;
                                    insert(&mut tx, token.get(), u64::from(is_write), seq).await?;
                                    pause(&mut rng).await;
                                    tx.commit().await?;
                                }
                                Err(Error::Stale(_)) => refused += 1,
                                Err(e) => return Err(e),
                            }
                        }
                        Ok::<_, Error>(refused)
                    }));
                }
                let mut refused = 0;
                for task in tasks {
                    refused += task.await??;
                }
                let rows = committed(pool).await?;
                let (mut any, mut wrote) = (0i64, 0i64);
                for (token, kind, _) in &rows {
                    if *kind == 1 {
                        assert!(*token >= any, "write {token} committed after a token {any}");
                        wrote = *token;
                    } else {
                        assert!(*token >= wrote, "read {token} committed after a write {wrote}");
                    }
                    any = any.max(*token);
                }
                assert!(refused > 0 && rows.iter().any(|r| r.1 == 1), "{refused} refused");
                assert_eq!(rows.len() as u64 + refused, 16 * 100);
                Ok(())
            }

            /// Up to 300 µs, or none.
            async fn pause(rng: &mut StdRng) {
                let us = rng.gen_range(0..600u64);
                if us < 300 {
                    tokio::time::sleep(Duration::from_micros(us)).await;
                }
            }
        }
    };
}

cases!(
    sqlite,
    sqlx::Sqlite,
    "sqlite",
    Arc<()>,
    fresh_sqlite,
    lock_fence::sqlite::begin_immediate,
    "INTEGER"
);
cases!(
    postgres,
    sqlx::Postgres,
    "postgres",
    Arc<PgServer>,
    fresh_postgres,
    begin_postgres,
    "BIGSERIAL"
);
