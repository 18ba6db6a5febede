//! The built-in relay hub, served by the `gateway` binary for every hub name.
//!
//! It turns hubgate into a message relay with no server code: clients join groups and send to
//! all, others, groups, users or single connections. It is written on the public hub API, like
//! any application hub.
//!
//! | Method | Arguments | Effect |
//! |---|---|---|
//! | `Echo` | value | returns the value |
//! | `GetConnectionId` | | returns the caller's connection id |
//! | `JoinGroup` / `LeaveGroup` | group | completes once the membership change is in effect |
//! | `SendToAll` / `SendToOthers` | target, args... | invokes `target(args...)` on the recipients |
//! | `SendToGroup` / `SendToOthersInGroup` | group, target, args... | |
//! | `SendToUser` | user, target, args... | every connection of that user |
//! | `SendToConnection` | connectionId, target, args... | |
//!
//! The sends are ordered methods ([`HubBuilder::ordered_method`]): one client's messages reach
//! their recipients in the order it sent them, whatever `--max-parallel-invocations` says.
//!
//! Every method first asks the [`RelayPolicy`] (from the `--relay-*` options) whether the
//! caller may do this; a refusal is a `HubException` naming the reason.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::{self, Either, Ready};

use protocol::Value;

use super::{ArgumentError, FromArguments, Hub, HubBuilder, HubContext, HubError, RelayPolicy};

/// The relay hub definition; every method checks `policy` before it acts.
pub fn relay_hub(policy: RelayPolicy) -> Hub {
    let policy = Arc::new(policy);
    let hub = Hub::builder()
        .method("Echo", guarded(&policy, "Echo", |_ctx, _policy, (value,): (Value,)| async move { Ok(value) }))
        .method(
            "GetConnectionId",
            guarded(&policy, "GetConnectionId", |ctx, _policy, ()| async move { Ok(ctx.connection_id().to_owned()) }),
        );
    let hub = group_methods(hub, &policy);
    send_methods(hub, &policy).build()
}

fn group_methods(hub: HubBuilder, policy: &Arc<RelayPolicy>) -> HubBuilder {
    hub.method(
        "JoinGroup",
        guarded(policy, "JoinGroup", |ctx, policy, (group,): (String,)| async move {
            policy.check_join(&ctx, &group)?;
            ctx.groups().add_within(ctx.connection_id(), &group, policy.max_groups()).await?;
            Ok(())
        }),
    )
    .method(
        "LeaveGroup",
        guarded(policy, "LeaveGroup", |ctx, _policy, (group,): (String,)| async move {
            ctx.groups().remove(ctx.connection_id(), &group).await?;
            Ok(())
        }),
    )
}

fn send_methods(hub: HubBuilder, policy: &Arc<RelayPolicy>) -> HubBuilder {
    hub.ordered_method(
        "SendToAll",
        guarded(policy, "SendToAll", |ctx, _policy, args: Vec<Value>| async move {
            let (target, args) = split_target(args, 0)?;
            ctx.clients().all().send(&target, args).await?;
            Ok(())
        }),
    )
    .ordered_method(
        "SendToOthers",
        guarded(policy, "SendToOthers", |ctx, _policy, args: Vec<Value>| async move {
            let (target, args) = split_target(args, 0)?;
            ctx.clients().others().send(&target, args).await?;
            Ok(())
        }),
    )
    .ordered_method(
        "SendToGroup",
        guarded(policy, "SendToGroup", |ctx, policy, args: Vec<Value>| async move {
            let (group, target, args) = split_name_and_target(args)?;
            policy.check_group_send(&ctx, &group)?;
            ctx.clients().group(&group).send(&target, args).await?;
            Ok(())
        }),
    )
    .ordered_method(
        "SendToOthersInGroup",
        guarded(policy, "SendToOthersInGroup", |ctx, policy, args: Vec<Value>| async move {
            let (group, target, args) = split_name_and_target(args)?;
            policy.check_group_send(&ctx, &group)?;
            ctx.clients().others_in_group(&group).send(&target, args).await?;
            Ok(())
        }),
    )
    .ordered_method(
        "SendToUser",
        guarded(policy, "SendToUser", |ctx, policy, args: Vec<Value>| async move {
            policy.check_user_send()?;
            let (user, target, args) = split_name_and_target(args)?;
            ctx.clients().user(&user).send(&target, args).await?;
            Ok(())
        }),
    )
    .ordered_method(
        "SendToConnection",
        guarded(policy, "SendToConnection", |ctx, policy, args: Vec<Value>| async move {
            policy.check_connection_send()?;
            let (connection, target, args) = split_name_and_target(args)?;
            ctx.clients().connection(&connection).send(&target, args).await?;
            Ok(())
        }),
    )
}

/// Wraps a relay method so that the policy admits each call (method allowed, within the
/// caller's rate) before `method` runs; the method gets the policy for its own checks. The
/// arguments are read first, so a call with unreadable arguments fails as such and uses no rate.
/// The returned future is a plain `Either`, not a box: the hub builder already boxes each call
/// once, and every relayed message goes through here.
fn guarded<A, R, F, Fut>(
    policy: &Arc<RelayPolicy>,
    name: &'static str,
    method: F,
) -> impl Fn(HubContext, A) -> Either<Fut, Ready<Result<R, HubError>>> + Send + Sync + 'static
where
    A: FromArguments + Send + 'static,
    R: Send + 'static,
    F: Fn(HubContext, Arc<RelayPolicy>, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HubError>> + Send + 'static,
{
    let policy = policy.clone();
    move |context: HubContext, arguments: A| match policy.admit(&context, name) {
        Ok(()) => Either::Left(method(context, policy.clone(), arguments)),
        Err(refused) => Either::Right(future::ready(Err(refused))),
    }
}

/// Reads a leading string argument; `index` is its position for error messages.
fn leading_string(args: &mut Vec<Value>, index: usize, expected: usize) -> Result<String, HubError> {
    if args.is_empty() {
        return Err(ArgumentError::Count { provided: index, expected }.into());
    }
    match args.remove(0) {
        Value::String(s) => {
            s.into_str().ok_or_else(|| ArgumentError::Type { index, reason: "not valid UTF-8".into() }.into())
        }
        other => Err(ArgumentError::Type { index, reason: format!("expected a string, got {other}") }.into()),
    }
}

fn split_target(mut args: Vec<Value>, index: usize) -> Result<(String, Vec<Value>), HubError> {
    let target = leading_string(&mut args, index, index + 1)?;
    if target.is_empty() {
        return Err(HubError::hub("target must not be empty"));
    }
    Ok((target, args))
}

fn split_name_and_target(mut args: Vec<Value>) -> Result<(String, String, Vec<Value>), HubError> {
    let name = leading_string(&mut args, 0, 2)?;
    let (target, args) = split_target(args, 1)?;
    Ok((name, target, args))
}
