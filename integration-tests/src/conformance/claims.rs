//! The grant-policy seam: every backend grants the claims its capabilities list by
//! `decide`'s rule, and refuses every other claim with a typed error, never a grant.

use super::Ctx;
use crate::TestResult;
use fencelock::{backend::Claim, ErrorKind};
use std::time::Duration;

const NON_EXCLUSIVE: [Claim; 3] = [Claim::Read, Claim::Write, Claim::Shared { limit: 2 }];

pub(super) async fn unsupported_claims_are_typed_errors_never_grants(ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    let caps = a.capabilities();
    let lock = a.lock("claims").await?;
    for claim in NON_EXCLUSIVE.into_iter().filter(|c| !caps.supports(*c)) {
        let claimed = lock.clone().with_claim(claim);
        let err = claimed
            .acquire()
            .await
            .expect_err("unsupported claim granted");
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{claim:?}: {err}");
        let err = claimed.try_acquire().await.map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{claim:?}: {err}");
        let err = claimed
            .acquire_timeout(Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{claim:?}: {err}");
    }
    assert!(a.inspect("claims").await?.is_none(), "nothing enqueued");
    lock.try_acquire().await?.expect("free").release().await?;
    Ok(())
}

pub(super) async fn readers_share_and_a_writer_excludes_them(ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let read = |c: &fencelock::LockClient| {
        let c = c.clone();
        async move { Ok::<_, fencelock::Error>(c.lock("rw").await?.with_claim(Claim::Read)) }
    };
    let r1 = read(&a).await?.try_acquire().await?.expect("first reader");
    let r2 = read(&b).await?.try_acquire().await?.expect("second reader");
    let info = a.inspect("rw").await?.expect("held");
    assert_eq!(info.holders.len(), 2, "{info:?}");
    let writer = a.lock("rw").await?.with_claim(Claim::Write);
    assert!(
        writer.try_acquire().await?.is_none(),
        "writer while readers hold"
    );
    r1.release().await?;
    r2.release().await?;
    writer.try_acquire().await?.expect("free").release().await?;
    Ok(())
}

pub(super) async fn semaphore_grants_up_to_its_limit(ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    let permit = a.lock("sem").await?.with_claim(Claim::Shared { limit: 2 });
    let p1 = permit.try_acquire().await?.expect("first permit");
    let p2 = permit.try_acquire().await?.expect("second permit");
    assert!(
        permit.try_acquire().await?.is_none(),
        "a third over the limit"
    );
    assert_eq!(a.inspect("sem").await?.expect("held").holders.len(), 2);
    p1.release().await?;
    p2.release().await?;
    Ok(())
}
