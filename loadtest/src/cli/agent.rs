//! `loadtest agent --listen ADDR`: runs workers for a coordinator on another machine
//! (`loadtest run --agent HOST:PORT`).
//!
//! ```text
//! coordinator ──TCP──► agent: {"type":"hello","token":…}   wrong token: refused, closed
//!                            └► spawns `loadtest worker --confine` and relays the worker
//!                               protocol both ways (workers::wire) until either side closes
//! ```
//!
//! The token is compared in constant time. Each accepted coordinator gets its own worker
//! process; the worker is confined to the origins its job's targets name, so a negotiate
//! redirect cannot send an agent's load anywhere the scenario does not name. The relay is
//! plain TCP: run agents on a trusted network (the token keeps strangers from starting load,
//! it does not hide the traffic).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use super::workers::wire::{self, FromWorker, Hello};

/// How long a coordinator has to say hello.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);

/// Accepts coordinators on `listener` until the process ends.
pub async fn serve(listener: TcpListener, token: String) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let (exe, token) = (exe.clone(), token.clone());
        tokio::spawn(async move {
            match coordinate(stream, &exe, &token).await {
                Ok(()) => eprintln!("agent: coordinator {peer} done"),
                Err(reason) => eprintln!("agent: coordinator {peer}: {reason}"),
            }
        });
    }
}

/// Serves one coordinator: checks its hello, then relays between it and a fresh worker.
async fn coordinate(stream: TcpStream, exe: &std::path::Path, token: &str) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut first = String::new();
    let said = tokio::time::timeout(HELLO_DEADLINE, read.read_line(&mut first)).await;
    let refusal = match said {
        Err(_) => Some("no hello in time".to_owned()),
        Ok(Err(e)) => Some(format!("reading the hello: {e}")),
        Ok(Ok(_)) => match serde_json::from_str::<Hello>(&first) {
            Ok(Hello::Hello { token: given }) if same(given.as_bytes(), token.as_bytes()) => None,
            Ok(_) => Some("bad token".to_owned()),
            Err(_) => Some("the first line is not a hello".to_owned()),
        },
    };
    if let Some(reason) = refusal {
        let _ = write.write_all(wire::line(&FromWorker::Refused { reason: reason.clone() }).as_bytes()).await;
        return Err(format!("refused: {reason}"));
    }
    let mut child = Command::new(exe)
        .args(["worker", "--confine"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start a worker: {e}"))?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("no pipes to the worker".into());
    };
    let inbound = async {
        let _ = tokio::io::copy_buf(&mut read, &mut stdin).await;
        drop(stdin);
    };
    let outbound = tokio::io::copy(&mut stdout, &mut write);
    // The coordinator closing ends the worker (its stdin closes); the worker ending closes
    // the coordinator's connection.
    tokio::select! {
        () = inbound => {}
        _ = outbound => {}
    }
    if tokio::time::timeout(HELLO_DEADLINE, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    Ok(())
}

/// Equality that takes as long whatever the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_compare_whole() {
        assert!(super::same(b"s3cret", b"s3cret"));
        assert!(!super::same(b"s3cret", b"s3creT") && !super::same(b"s3cret", b"s3cre") && !super::same(b"", b"x"));
    }
}
