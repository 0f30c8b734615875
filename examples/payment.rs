//! The seed's payment story against a real database: a charge must happen once, and the
//! database itself refuses a holder whose lock passed on.
//!
//! ```text
//! cargo run --example payment                                      # SQLite file, no server
//! cargo run --example payment -- postgres://user@127.0.0.1:5432/shop
//! ```
//!
//! 1. **Double click.** A user clicks "Pay" twice; the two requests land on two
//!    servers, which race for the lock `order/<id>`. Each, under the lock, reads whether
//!    the order is paid and, if not, charges it in a transaction fenced with its token.
//!    Exactly one charge row is written.
//! 2. **Paused holder.** Server A takes the lock, reads "unpaid", then pauses (a long
//!    GC) past its lease's TTL. The lock passes to server B, which charges the order. A
//!    wakes up, still sure of its read, and charges: the database refuses its stale
//!    token inside the transaction, and no second charge row appears.
//!
//! The locks are on `memory://` (the pause is the backend's stalled keep-alive); the
//! data is in SQLite (a temp file) or in the PostgreSQL database given as argument.
//! The fence is `lock_fence::{sqlite, postgres}::fenced` on a `fencelock_fences` table.

use fencelock::{memory::MemoryBackend, FencingToken, LockClient};
use lock_fence::sqlx::{self, PgPool, SqlitePool};
use std::{
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

const TTL: Duration = Duration::from_secs(1);

/// The shop's database: `charges(order_id, amount, token, server)` and the fences.
enum Shop {
    Lite(SqlitePool),
    Pg(PgPool),
}

/// Runs `$body` with `$pool` bound to the pool and `$fence` to the matching kit module.
macro_rules! on_db {
    ($shop:expr, $pool:ident => $body:expr) => {
        match $shop {
            Shop::Lite($pool) => $body,
            Shop::Pg($pool) => $body,
        }
    };
    ($shop:expr, $pool:ident, $fence:ident => $body:expr) => {
        match $shop {
            Shop::Lite($pool) => {
                use lock_fence::sqlite as $fence;
                $body
            }
            Shop::Pg($pool) => {
                use lock_fence::postgres as $fence;
                $body
            }
        }
    };
}

impl Shop {
    async fn open(
        url: Option<&str>,
    ) -> Result<(Shop, Option<tempfile::TempDir>), Box<dyn std::error::Error>> {
        let (shop, dir) = match url {
            Some(url) => (Shop::Pg(PgPool::connect(url).await?), None),
            None => {
                let dir = tempfile::tempdir()?;
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.path().join("shop.db"))
                    .create_if_missing(true);
                (
                    Shop::Lite(SqlitePool::connect_with(options).await?),
                    Some(dir),
                )
            }
        };
        on_db!(&shop, pool, fence => {
            fence::create_fences_table(&mut *pool.acquire().await?).await?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS charges (
                    order_id BIGINT NOT NULL, amount BIGINT NOT NULL,
                    token BIGINT NOT NULL, server TEXT NOT NULL)",
            )
            .execute(pool)
            .await?;
        });
        Ok((shop, dir))
    }

    /// Whether `order` has a charge (a plain read, outside any fence).
    async fn is_paid(&self, order: i64) -> Result<bool, lock_fence::Error> {
        Ok(self.charges(order).await? > 0)
    }

    async fn charges(&self, order: i64) -> Result<i64, lock_fence::Error> {
        on_db!(self, pool => {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM charges WHERE order_id = $1")
                .bind(order)
                .fetch_one(pool)
                .await?)
        })
    }

    /// Writes the charge row in a transaction fenced with `token`.
    async fn charge(
        &self,
        order: i64,
        token: FencingToken,
        server: &str,
    ) -> Result<(), lock_fence::Error> {
        let name = format!("order/{order}");
        on_db!(self, pool, fence => {
            let mut tx = pool.begin().await?;
            fence::fenced(&mut tx, &name, token).await?; // stale: `?` drops tx, rolled back
            sqlx::query("INSERT INTO charges (order_id, amount, token, server) VALUES ($1, 4999, $2, $3)")
                .bind(order)
                .bind(token.get() as i64)
                .bind(server)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::args().nth(1);
    match run(url.as_deref()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payment failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let (shop, _dir) = Shop::open(url).await?;
    println!(
        "fencelock payment on {}",
        url.map_or(
            "a SQLite file (temp dir)".to_owned(),
            fencelock::url::redact
        )
    );
    // A fresh order id per run, so a re-run on the same PostgreSQL starts clean.
    let base = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 * 10;
    // Two servers, each with its own connection to one lock store.
    let lock_url = format!("memory://payment?ttl={}s", TTL.as_secs());
    let server_a = fencelock::connect(&lock_url).await?;
    let server_b = fencelock::connect(&lock_url).await?;

    let order = base + 1;
    println!("\n1. double click: two servers receive \"Pay\" for order {order}");
    let (a, b) = tokio::join!(
        pay(&server_a, &shop, order, "server-A"),
        pay(&server_b, &shop, order, "server-B")
    );
    a?;
    b?;
    let charged_once = shop.charges(order).await?;
    println!("   charge rows for order {order}: {charged_once}");

    let order = base + 2;
    println!("\n2. paused holder: order {order}");
    let stale_refused = paused_holder(&server_a, &server_b, &shop, order).await?;
    let after_pause = shop.charges(order).await?;
    println!("   charge rows for order {order}: {after_pause}");

    shop.close().await;
    server_a.close().await?;
    server_b.close().await?;
    if charged_once != 1 || after_pause != 1 || !stale_refused {
        return Err(format!(
            "story did not hold: {charged_once} and {after_pause} charge rows, stale refused: {stale_refused}"
        )
        .into());
    }
    println!("\nproved: a double click charged once; the paused holder's late charge was refused by the database itself");
    println!("        (its token was older than the one committed), so each order has exactly one charge row.");
    Ok(())
}

/// A server handling "Pay": lock the order, charge it unless paid, release.
async fn pay(
    server: &LockClient,
    shop: &Shop,
    order: i64,
    who: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let guard = server.acquire(format!("order/{order}")).await?;
    charge_unless_paid(shop, order, guard.token(), who).await?;
    guard.release().await?;
    Ok(())
}

async fn charge_unless_paid(
    shop: &Shop,
    order: i64,
    token: FencingToken,
    who: &str,
) -> Result<(), lock_fence::Error> {
    if shop.is_paid(order).await? {
        println!("   [{who}] token {token}: order already paid, nothing to do");
    } else {
        shop.charge(order, token, who).await?;
        println!("   [{who}] token {token}: charged 49.99");
    }
    Ok(())
}

/// Server A reads "unpaid" and pauses past its TTL; B charges; A charges late. Returns
/// whether the database refused A.
async fn paused_holder(
    server_a: &LockClient,
    server_b: &LockClient,
    shop: &Shop,
    order: i64,
) -> Result<bool, Box<dyn std::error::Error>> {
    let name = format!("order/{order}");
    let a = server_a.acquire(name.as_str()).await?;
    let unpaid = !shop.is_paid(order).await?;
    println!(
        "   [server-A] token {}: order unpaid = {unpaid}; now pauses (a long GC) past its {TTL:?} ttl...",
        a.token()
    );
    match server_a.backend::<MemoryBackend>() {
        Some(memory) => {
            memory.stall_lease(a.lease().id());
        }
        None => a.lease().close().await?,
    }
    let b = server_b.acquire_timeout(name.as_str(), TTL * 10).await?;
    println!("   [server-B] lock granted after A's lease expired");
    charge_unless_paid(shop, order, b.token(), "server-B").await?;
    b.release().await?;
    println!(
        "   [server-A] wakes up (its guard reads {}, but it does not look again) and charges with token {}:",
        a.state(),
        a.token()
    );
    let refused = match shop.charge(order, a.token(), "server-A").await {
        Err(lock_fence::Error::Stale(stale)) => {
            println!("   [server-A] REFUSED by the database: {stale}");
            true
        }
        Err(e) => return Err(e.into()),
        Ok(()) => {
            println!("   [server-A] charged: a double charge!");
            false
        }
    };
    let _ = a.release().await; // its lease is gone: LeaseLost, as expected
    Ok(refused)
}
