//! The cost of the fence per transaction: the same transaction with and without
//! `fenced` (fences table) or `fenced_row` (a `fence_token` column), in the same run,
//! on a SQLite file and on a PostgreSQL server started here (temp dir, free loopback
//! port, stopped by PID at the end).
//!
//! ```text
//! cargo bench -p fencelock-integration-tests --bench fence_overhead            # 2000 per variant
//! cargo bench -p fencelock-integration-tests --bench fence_overhead -- 500     # fewer
//! ```
//!
//! One connection, one transaction at a time; variants alternate in blocks of 100 so
//! that drift hits them alike. Prints the mean per transaction and the ratio to the
//! unfenced one. The test server runs with `fsync=off` and `synchronous_commit=off`
//! and SQLite with `synchronous=NORMAL` in WAL mode: with durable commits the fixed
//! cost per transaction grows and the fence's share shrinks.

use fencelock_integration_tests::servers::{self, PgServer};
use lock_fence::{sqlx, FenceColumn, FencingToken};
use std::time::{Duration, Instant};

const BLOCK: u32 = 100;

/// The variants: (label, fenced table, fenced row).
const VARIANTS: [(&str, bool, bool); 4] = [
    ("insert", false, false),
    ("fenced + insert", true, false),
    ("update", false, false),
    ("fenced_row + update", false, true),
];

macro_rules! bench_driver {
    ($name:ident, $db:ty, $fence:ident) => {
        async fn $name(
            pool: &sqlx::Pool<$db>,
            per_variant: u32,
        ) -> Result<[Duration; 4], Box<dyn std::error::Error>> {
            use lock_fence::$fence as fence;
            let col = FenceColumn::new("accounts", "id")?;
            fence::create_fences_table(&mut *pool.acquire().await?).await?;
            sqlx::query("CREATE TABLE charges (order_id BIGINT NOT NULL, amount BIGINT NOT NULL)")
                .execute(pool)
                .await?;
            sqlx::query("CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)")
                .execute(pool)
                .await?;
            sqlx::query(&col.add_column_sql()).execute(pool).await?;
            sqlx::query("INSERT INTO accounts (id, balance) VALUES (1, 0)")
                .execute(pool)
                .await?;
            let mut conn = pool.acquire().await?;
            let mut spent = [Duration::ZERO; 4];
            let mut token = 0u64;
            for _ in 0..per_variant.div_ceil(BLOCK) {
                for (v, (label, table, row)) in VARIANTS.iter().enumerate() {
                    let started = Instant::now();
                    for _ in 0..BLOCK {
                        token += 1;
                        let t = FencingToken::new(token);
                        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                        if *table {
                            fence::fenced(&mut tx, "order/1", t).await?;
                        }
                        if *row {
                            fence::fenced_row(&mut tx, &col, 1i64, t).await?;
                        }
                        let sql = if label.ends_with("insert") {
                            "INSERT INTO charges (order_id, amount) VALUES (1, $1)"
                        } else {
                            "UPDATE accounts SET balance = balance + $1 WHERE id = 1"
                        };
                        sqlx::query(sql).bind(1i64).execute(&mut *tx).await?;
                        tx.commit().await?;
                    }
                    spent[v] += started.elapsed();
                }
            }
            Ok(spent)
        }
    };
}

bench_driver!(bench_sqlite, sqlx::Sqlite, sqlite);
bench_driver!(bench_postgres, sqlx::Postgres, postgres);

fn print(db: &str, spent: [Duration; 4], n: u32) {
    let n = f64::from(n.div_ceil(BLOCK) * BLOCK);
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
    println!("{db}:");
    for (pair, base) in [(1, 0), (3, 2)] {
        println!(
            "  {:<22} {:8.1} µs/tx   {:<22} {:8.1} µs/tx   ratio {:.2}",
            VARIANTS[base].0,
            us(spent[base]),
            VARIANTS[pair].0,
            us(spent[pair]),
            spent[pair].as_secs_f64() / spent[base].as_secs_f64()
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("bench.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    let lite = sqlx::SqlitePool::connect_with(options).await?;
    print("sqlite (file, WAL)", bench_sqlite(&lite, n).await?, n);
    lite.close().await;

    if !servers::require(PgServer::available(), "PostgreSQL (initdb, postgres)") {
        return Ok(());
    }
    let pg = PgServer::start()?;
    let pool = sqlx::PgPool::connect(&pg.url("postgres")).await?;
    let spent = bench_postgres(&pool, n).await;
    pool.close().await;
    print(pg.version(), spent?, n);
    Ok(())
}
