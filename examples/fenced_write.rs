//! Fenced writes: the resource, not the lock, is what stops a stale holder.
//!
//! ```text
//! cargo run --example fenced_write                                # memory://
//! cargo run --features zk --example fenced_write -- zk://127.0.0.1:2181
//! ```
//!
//! An account row carries a `fence_token` column, and every update is conditional on
//! it, as in SQL: `UPDATE accounts SET balance = $2, fence_token = $1 WHERE id = $3
//! AND fence_token <= $1`. The example charges a card under the lock with
//! [`LockClient::with_lock`](fencelock::LockClient::with_lock), then shows a holder
//! whose lock was broken being refused by the row.

use fencelock::{ErrorKind, FencingToken};
use std::{process::ExitCode, sync::Mutex};

/// One row of an `accounts` table.
#[derive(Debug)]
struct Account {
    balance: i64,
    fence_token: u64,
}

/// `UPDATE accounts SET balance = balance - amount, fence_token = token WHERE fence_token <= token`:
/// returns the number of rows updated.
fn charge(row: &Mutex<Account>, token: FencingToken, amount: i64) -> usize {
    let mut row = row.lock().expect("not poisoned");
    if row.fence_token > token.get() {
        return 0;
    }
    row.balance -= amount;
    row.fence_token = token.get();
    1
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://fenced".to_owned());
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fenced_write failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("fencelock fenced_write on {}", fencelock::url::redact(url));
    let row = Mutex::new(Account {
        balance: 100,
        fence_token: 0,
    });
    let a = fencelock::connect(url).await?;
    let b = fencelock::connect(url).await?;

    let row_ref = &row;
    let updated = a
        .with_lock(
            "card/4242",
            |token| async move { charge(row_ref, token, 30) },
        )
        .await?;
    println!(
        "  charge 30 under with_lock: {updated} row updated, {:?}",
        row.lock().expect("not poisoned")
    );

    // A holder takes the lock, then an operator breaks it (its lease is revoked) and
    // another holder charges with a newer token.
    let stale = a.acquire("card/4242").await?;
    stale.lease().close().await?;
    println!(
        "  holder A's lease was revoked; its guard is now {}",
        stale.state()
    );
    let fresh = b.acquire("card/4242").await?;
    println!(
        "  holder B charges 20 with token {}: {} row updated",
        fresh.token(),
        charge(&row, fresh.token(), 20)
    );
    let rows = charge(&row, stale.token(), 50);
    println!(
        "  holder A, unaware, charges 50 with token {}: {rows} rows updated",
        stale.token()
    );
    let err = stale
        .ensure_held()
        .expect_err("a revoked guard reports held");
    assert_eq!(err.kind(), ErrorKind::LeaseLost);
    fresh.release().await?;
    a.close().await?;
    b.close().await?;

    let balance = row.lock().expect("not poisoned").balance;
    if rows != 0 || balance != 50 {
        return Err(format!("stale charge went through: balance {balance}").into());
    }
    println!(
        "\nproved: the stale holder's charge updated 0 rows; balance is {balance} (100 - 30 - 20)"
    );
    Ok(())
}
