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

use protocol::Value;

use super::{ArgumentError, Hub, HubContext, HubError};

/// The relay hub definition.
pub fn relay_hub() -> Hub {
    Hub::builder()
        .method("Echo", |_ctx: HubContext, (value,): (Value,)| async move { Ok(value) })
        .method("GetConnectionId", |ctx: HubContext, ()| async move { Ok(ctx.connection_id().to_owned()) })
        .method("JoinGroup", |ctx: HubContext, (group,): (String,)| async move {
            ctx.groups().add(ctx.connection_id(), &group).await?;
            Ok(())
        })
        .method("LeaveGroup", |ctx: HubContext, (group,): (String,)| async move {
            ctx.groups().remove(ctx.connection_id(), &group).await?;
            Ok(())
        })
        .method("SendToAll", |ctx: HubContext, args: Vec<Value>| async move {
            let (target, args) = split_target(args, 0)?;
            ctx.clients().all().send(&target, args).await?;
            Ok(())
        })
        .method("SendToOthers", |ctx: HubContext, args: Vec<Value>| async move {
            let (target, args) = split_target(args, 0)?;
            ctx.clients().others().send(&target, args).await?;
            Ok(())
        })
        .method("SendToGroup", |ctx: HubContext, args: Vec<Value>| async move {
            let (group, target, args) = split_name_and_target(args)?;
            ctx.clients().group(&group).send(&target, args).await?;
            Ok(())
        })
        .method("SendToOthersInGroup", |ctx: HubContext, args: Vec<Value>| async move {
            let (group, target, args) = split_name_and_target(args)?;
            ctx.clients().others_in_group(&group).send(&target, args).await?;
            Ok(())
        })
        .method("SendToUser", |ctx: HubContext, args: Vec<Value>| async move {
            let (user, target, args) = split_name_and_target(args)?;
            ctx.clients().user(&user).send(&target, args).await?;
            Ok(())
        })
        .method("SendToConnection", |ctx: HubContext, args: Vec<Value>| async move {
            let (connection, target, args) = split_name_and_target(args)?;
            ctx.clients().connection(&connection).send(&target, args).await?;
            Ok(())
        })
        .build()
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
