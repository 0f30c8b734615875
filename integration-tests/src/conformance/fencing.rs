//! Fencing tokens.

use super::Ctx;
use crate::TestResult;
use fencelock::{ErrorKind, Fence};

pub(super) async fn tokens_increase_across_holders_and_clients(ctx: Ctx) -> TestResult {
    let clients = [
        ctx.client().await?,
        ctx.client().await?,
        ctx.client().await?,
    ];
    let mut last = None;
    for round in 0..9 {
        let guard = clients[round % 3].acquire("f").await?;
        if let Some(prev) = last {
            assert!(
                guard.token() > prev,
                "token {} not above {prev}",
                guard.token()
            );
        }
        last = Some(guard.token());
        guard.release().await?;
    }
    let other = clients[0].acquire("other-name").await?;
    assert!(
        other.token() > last.ok_or("no token")?,
        "tokens of one store are not comparable"
    );
    other.release().await?;
    Ok(())
}

pub(super) async fn fence_rejects_the_stale_holder(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let fence = Fence::new();
    let first = a.acquire("res").await?;
    let stale_token = first.token();
    fence.check("res", stale_token)?;
    first.release().await?;
    let second = b.acquire("res").await?;
    fence.check("res", second.token())?;
    fence.check("res", second.token())?;
    let err = fence
        .check("res", stale_token)
        .expect_err("stale token accepted");
    assert_eq!(err.kind(), ErrorKind::StaleToken);
    second.release().await?;
    Ok(())
}
