//! A chat server written on the hub API: typed methods, the caller's identity, groups, and
//! sends to others. Run it with `cargo run -p gateway --example chat` and connect the official
//! client to `http://127.0.0.1:8080/chat`.

use axum::Router;
use gateway::hub::{Hub, HubContext, HubError};
use gateway::{Config, Gateway};
use serde::{Deserialize, Serialize};

/// What a client posts.
#[derive(Debug, Deserialize)]
struct Post {
    room: String,
    text: String,
}

/// What every member of the room receives.
#[derive(Debug, Serialize)]
struct Said<'a> {
    from: &'a str,
    text: &'a str,
}

fn chat_hub() -> Hub {
    Hub::builder()
        .on_connected(|ctx: HubContext| async move {
            let _ = ctx.clients().caller().send("welcome", (ctx.connection_id(),)).await;
        })
        .method("Join", |ctx: HubContext, (room,): (String,)| async move {
            ctx.groups().add(ctx.connection_id(), &room).await?;
            ctx.clients().others_in_group(&room).send("joined", (ctx.connection_id(),)).await?;
            Ok::<_, HubError>(())
        })
        .method("Say", |ctx: HubContext, (post,): (Post,)| async move {
            if post.text.trim().is_empty() {
                return Err(HubError::hub("empty messages are not sent"));
            }
            let from = ctx.user_id().unwrap_or(ctx.connection_id()).to_owned();
            ctx.clients().group(&post.room).send("said", (Said { from: &from, text: &post.text },)).await?;
            Ok(post.text.chars().count())
        })
        .method("Whisper", |ctx: HubContext, (to, text): (String, String)| async move {
            ctx.clients().connection(&to).send("whispered", (ctx.connection_id(), text)).await?;
            Ok::<_, HubError>(())
        })
        .build()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let config = Config::default();
    let gateway = Gateway::from_config(config.clone()).await?;
    let app = Router::new().nest("/chat", gateway.hub_router("chat", chat_hub()));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    println!("chat hub at http://{}/chat", listener.local_addr()?);
    gateway::serve(listener, gateway, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
