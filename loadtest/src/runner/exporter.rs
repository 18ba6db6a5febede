//! Serves the run's metrics at `GET /metrics` in the Prometheus text format
//! (`--prometheus ADDR`). A deliberately tiny HTTP/1.1 responder: one request per connection,
//! the request head read up to a bound, then the body and close — no HTTP stack for one page.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Recorder;
use crate::model::exposition;

/// Largest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// Binds `addr` and answers scrapes until the task is dropped. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    recorder: Recorder,
    tags: BTreeMap<String, String>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (recorder, tags) = (recorder.clone(), tags.clone());
            tokio::spawn(async move { answer(stream, &recorder, &tags).await });
        }
    });
    Ok((bound, task))
}

async fn answer(mut stream: TcpStream, recorder: &Recorder, tags: &BTreeMap<String, String>) {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let wanted = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?");
    let (status, body) = if wanted {
        ("200 OK", recorder.with(|metrics| exposition::render(metrics, tags)))
    } else {
        ("404 Not Found", "only GET /metrics is served here\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn a_scrape_gets_the_current_metrics_and_other_paths_404() {
        let recorder = Recorder::default();
        recorder.count("iterations", 3);
        let (addr, task) =
            serve("127.0.0.1:0".parse().expect("addr"), recorder.clone(), BTreeMap::new()).await.expect("bind");
        let first = get(addr, "/metrics").await;
        assert!(
            first.starts_with("HTTP/1.1 200 OK\r\n") && first.ends_with("loadtest_iterations_total 3\n"),
            "{first}"
        );
        recorder.count("iterations", 1);
        assert!(get(addr, "/metrics").await.ends_with("loadtest_iterations_total 4\n"));
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
