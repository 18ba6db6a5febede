//! `POST {hub}/negotiate`: which connection to open, on which URL, with which token.

use reqwest::Url;
use serde::Deserialize;

use super::http::{authorized, client, parse_hub_url, transport_error, with_path_segment, with_query};
use super::{ClientError, ClientOptions, Protocol, Transport};

/// Redirects followed before giving up (Azure SignalR style responses need one).
const MAX_REDIRECTS: usize = 2;

/// Where and as whom to open the transport.
#[derive(Debug, Clone)]
pub(super) struct Negotiated {
    /// The hub URL (the redirect target after a redirect).
    pub url: Url,
    /// The `id` query value: the connection token (v1) or id (v0); none when skipped.
    pub id: Option<String>,
    /// The public connection id, when the server told it.
    pub connection_id: Option<String>,
    /// The bearer token (a redirect's token replaces the caller's).
    pub access_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    error: Option<String>,
    url: Option<String>,
    access_token: Option<String>,
    #[serde(default)]
    negotiate_version: u32,
    connection_id: Option<String>,
    connection_token: Option<String>,
    #[serde(default)]
    available_transports: Vec<Offer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Offer {
    transport: String,
    #[serde(default)]
    transfer_formats: Vec<String>,
}

/// Negotiates, or (with `skip_negotiation`) just prepares the direct WebSocket.
pub(super) async fn negotiate(options: &ClientOptions) -> Result<Negotiated, ClientError> {
    let mut url = parse_hub_url(&options.url)?;
    let mut access_token = options.access_token.clone();
    if options.skip_negotiation {
        if options.transport != Transport::WebSockets {
            return Err(ClientError::Negotiate("skip_negotiation needs the WebSockets transport".into()));
        }
        return Ok(Negotiated { url, id: None, connection_id: None, access_token });
    }
    for _ in 0..=MAX_REDIRECTS {
        let body = request(&url, options, access_token.as_deref()).await?;
        if let Some(error) = body.error {
            return Err(ClientError::Negotiate(error));
        }
        if let Some(redirect) = body.url {
            url = parse_hub_url(&redirect)?;
            if let Some(allowed) = &options.allowed_origins {
                let origin = format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0));
                if !allowed.contains(&origin) {
                    return Err(ClientError::Negotiate(format!(
                        "redirect to {origin} refused: not a target of the run"
                    )));
                }
            }
            access_token = body.access_token.or(access_token);
            continue;
        }
        check_offer(&body.available_transports, options.transport, options.protocol)?;
        let id = if body.negotiate_version >= 1 { body.connection_token } else { body.connection_id.clone() };
        let Some(id) = id else {
            return Err(ClientError::Negotiate("the response has no connection token or id".into()));
        };
        return Ok(Negotiated { url, id: Some(id), connection_id: body.connection_id, access_token });
    }
    Err(ClientError::Negotiate(format!("more than {MAX_REDIRECTS} redirects")))
}

async fn request(hub: &Url, options: &ClientOptions, token: Option<&str>) -> Result<Body, ClientError> {
    let version = options.negotiate_version.to_string();
    let url = with_query(
        &with_path_segment(hub, "negotiate"),
        &[("negotiateVersion", (version != "0").then_some(&*version))],
    );
    let mut post = authorized(client().post(url), token);
    if options.negotiate_connection_close {
        // hyper does not return a connection to the pool after a request that asked for close.
        post = post.header(reqwest::header::CONNECTION, "close");
    }
    let response = post.send().await.map_err(transport_error("negotiate"))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(transport_error("negotiate: body"))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        return Err(ClientError::Negotiate(format!("status {}: {}", status.as_u16(), text.trim())));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Negotiate(format!("the body is not a negotiate response: {e}")))
}

/// The transport must be offered with the transfer format the protocol needs (MessagePack
/// is Binary, which SSE never offers).
fn check_offer(offers: &[Offer], transport: Transport, protocol: Protocol) -> Result<(), ClientError> {
    let format = if protocol.is_text() { "Text" } else { "Binary" };
    let offered =
        offers.iter().any(|o| o.transport == transport.name() && o.transfer_formats.iter().any(|f| f == format));
    if offered {
        Ok(())
    } else {
        Err(ClientError::Negotiate(format!("the server does not offer {} with {format} transfer", transport.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_pack_is_never_offered_over_sse() {
        let body: Body = serde_json::from_str(
            r#"{"negotiateVersion":1,"connectionId":"a","connectionToken":"t","availableTransports":[
            {"transport":"WebSockets","transferFormats":["Text","Binary"]},
            {"transport":"ServerSentEvents","transferFormats":["Text"]}]}"#,
        )
        .expect("a negotiate body");
        let offers = &body.available_transports;
        assert!(check_offer(offers, Transport::WebSockets, Protocol::MessagePack).is_ok());
        assert!(check_offer(offers, Transport::ServerSentEvents, Protocol::Json).is_ok());
        assert!(check_offer(offers, Transport::ServerSentEvents, Protocol::MessagePack).is_err());
        assert!(check_offer(offers, Transport::LongPolling, Protocol::Json).is_err());
    }

    #[test]
    fn a_redirect_body_is_read() {
        let body: Body = serde_json::from_str(r#"{"url":"http://other/hub","accessToken":"jwt"}"#).expect("parsed");
        assert_eq!(body.url.as_deref(), Some("http://other/hub"));
        assert_eq!(body.access_token.as_deref(), Some("jwt"));
    }
}
