//! The negotiate request, over a minimal HTTP/1.1 client written for it.
//!
//! SignalR needs exactly one HTTP request before the WebSocket: `POST {hub}/negotiate`. A full
//! HTTP client would keep a pool of idle keep-alive connections open to the server, and each
//! of those costs the server memory that would be counted against the WebSocket connections
//! being measured. This client sends `Connection: close`, reads one bounded response and is
//! gone.

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// Largest negotiate response accepted; real ones are a few hundred bytes.
const MAX_RESPONSE: usize = 64 * 1024;

/// Negotiates a connection (negotiate version 1) and returns its connection token.
pub async fn negotiate(target: &Target) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(target.address).await.context("negotiate: connect")?;
    stream.set_nodelay(true)?;
    let request = format!(
        "POST {}/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).await.context("negotiate: send")?;
    let response = read_response(&mut stream).await?;
    let body = parse_response(&response)?;
    token_from_body(body)
}

/// Reads until the body announced by `Content-Length` is complete, or until the server closes.
async fn read_response(stream: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut response = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let read = stream.read(&mut chunk).await.context("negotiate: receive")?;
        if read == 0 {
            return Ok(response);
        }
        response.extend_from_slice(&chunk[..read]);
        if response.len() > MAX_RESPONSE {
            bail!("negotiate: response larger than {MAX_RESPONSE} bytes");
        }
        if let Some((head_len, Some(body_len))) = head_and_body_length(&response) {
            if response.len() >= head_len + body_len {
                response.truncate(head_len + body_len);
                return Ok(response);
            }
        }
    }
}

/// The length of the head (blank line included) and the declared body length, once the whole
/// head has arrived.
fn head_and_body_length(response: &[u8]) -> Option<(usize, Option<usize>)> {
    let head_len = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&response[..head_len]);
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    });
    Some((head_len, length))
}

/// Checks the status and framing, and returns the body.
fn parse_response(response: &[u8]) -> anyhow::Result<&[u8]> {
    let Some((head_len, _)) = head_and_body_length(response) else {
        bail!("negotiate: incomplete HTTP response ({} bytes)", response.len());
    };
    let head = String::from_utf8_lossy(&response[..head_len]);
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        bail!("negotiate: HTTP status {status_line:?}");
    }
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked")
        })
    });
    if chunked {
        bail!("negotiate: chunked responses are not supported");
    }
    Ok(&response[head_len..])
}

/// The connection token from a negotiate version 1 body (the id for servers that only speak
/// version 0).
fn token_from_body(body: &[u8]) -> anyhow::Result<String> {
    let json: serde_json::Value = serde_json::from_slice(body).context("negotiate: body is not JSON")?;
    if let Some(error) = json.get("error").and_then(|e| e.as_str()) {
        bail!("negotiate: server error: {error}");
    }
    json.get("connectionToken")
        .or_else(|| json.get("connectionId"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .context("negotiate: no connectionToken in the response")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n{\"negotiateVersion\":1,\"connectionId\":\"a\",\"connectionToken\":\"t\"}";

    #[test]
    fn a_version_one_response_yields_the_token() {
        let body = parse_response(OK).unwrap();
        assert_eq!(token_from_body(body).unwrap(), "t");
    }

    #[test]
    fn the_body_length_is_known_once_the_head_is_complete() {
        assert_eq!(head_and_body_length(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"), None);
        assert_eq!(head_and_body_length(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"), Some((38, Some(5))));
    }

    #[test]
    fn errors_are_reported_not_unwrapped() {
        assert!(parse_response(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(token_from_body(b"{\"error\":\"nope\"}").is_err());
        assert!(token_from_body(b"not json").is_err());
    }
}
