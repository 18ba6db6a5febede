//! How a node finds the address of another node it forwards to, when nodes advertise host
//! names (`--advertise-url http://gateway-2:8080`, as in docker-compose.yml).
//!
//! The system resolver waits five seconds for an answer that was lost before it asks again;
//! and the DNS servers of container networks do lose queries, sometimes for seconds (seen with
//! podman's aardvark-dns while the containers of a compose project were still starting: a
//! node's queries for another went unanswered for more than 1.7 s, and the forwarded request
//! failed although both nodes were up). So this resolver asks again sooner and keeps asking
//! for about six seconds ([`ATTEMPTS`]), remembers each answer for [`FRESH_FOR`], and when no
//! answer comes at all falls back to the last one it had: a node's address rarely changes, and
//! if it did, the connect fails as it would have anyway. An answer that the name does not
//! exist is final (the node is gone): no old address stands in for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long an answer is used without asking again.
pub const FRESH_FOR: Duration = Duration::from_secs(10);

/// How long each attempt to resolve a name waits before asking again (5.75 s in all).
pub const ATTEMPTS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(2),
];

/// A resolver for node-to-node requests: quick to ask again, and remembering answers.
#[derive(Default)]
pub struct PeerNames {
    known: Arc<Mutex<HashMap<String, Known>>>,
}

#[derive(Clone)]
struct Known {
    addresses: Vec<SocketAddr>,
    at: Instant,
}

impl Resolve for PeerNames {
    fn resolve(&self, name: Name) -> Resolving {
        let known = self.known.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let remembered = known.lock().ok().and_then(|known| known.get(&host).cloned());
            if let Some(fresh) = remembered.as_ref().filter(|known| known.at.elapsed() < FRESH_FOR) {
                return Ok(addrs(fresh.addresses.clone()));
            }
            match lookup(&host).await {
                Ok(addresses) => {
                    if let Ok(mut known) = known.lock() {
                        known.insert(host, Known { addresses: addresses.clone(), at: Instant::now() });
                    }
                    Ok(addrs(addresses))
                }
                Err(Unresolved::NoAnswer(error)) => match remembered {
                    Some(stale) => {
                        tracing::debug!(%host, %error, "no answer for a node's name; using the last one");
                        Ok(addrs(stale.addresses))
                    }
                    None => Err(error.into()),
                },
                Err(Unresolved::Refused(error)) => Err(error.into()),
            }
        })
    }
}

fn addrs(addresses: Vec<SocketAddr>) -> Addrs {
    Box::new(addresses.into_iter())
}

/// Why a name did not resolve.
enum Unresolved {
    /// No answer came in time, however often asked.
    NoAnswer(std::io::Error),
    /// The answer was that the name has no address.
    Refused(std::io::Error),
}

/// Resolves `host`, asking again when an attempt gets no answer in time.
async fn lookup(host: &str) -> Result<Vec<SocketAddr>, Unresolved> {
    for wait in ATTEMPTS {
        match tokio::time::timeout(wait, tokio::net::lookup_host((host, 0))).await {
            Ok(Ok(found)) => {
                let addresses: Vec<SocketAddr> = found.collect();
                if !addresses.is_empty() {
                    return Ok(addresses);
                }
            }
            // An answer that the name does not exist is an answer: asking again would not help.
            Ok(Err(error)) => return Err(Unresolved::Refused(error)),
            Err(_) => {}
        }
    }
    let waited: Duration = ATTEMPTS.iter().sum();
    Err(Unresolved::NoAnswer(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer for {host} in {waited:?}"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn resolve(names: &PeerNames, host: &str) -> Result<Vec<SocketAddr>, String> {
        let name: Name = host.parse().map_err(|_| "a name".to_owned())?;
        names.resolve(name).await.map(Iterator::collect).map_err(|error| error.to_string())
    }

    #[tokio::test]
    async fn a_name_resolves_and_is_remembered() {
        let names = PeerNames::default();
        let found = resolve(&names, "localhost").await.expect("localhost resolves");
        assert!(found.iter().all(|address| address.ip().is_loopback()), "{found:?}");
        assert!(names.known.lock().unwrap().contains_key("localhost"));
    }

    #[tokio::test]
    async fn a_remembered_answer_is_used_while_fresh() {
        let names = PeerNames::default();
        let address: SocketAddr = "10.1.2.3:0".parse().unwrap();
        names
            .known
            .lock()
            .unwrap()
            .insert("node-b.invalid".into(), Known { addresses: vec![address], at: Instant::now() });
        // `.invalid` never resolves (RFC 6761): the answer came from memory.
        assert_eq!(resolve(&names, "node-b.invalid").await, Ok(vec![address]));
    }

    #[tokio::test]
    async fn a_name_that_does_not_exist_is_not_replaced_by_an_old_answer() {
        let names = PeerNames::default();
        let address: SocketAddr = "10.1.2.3:0".parse().unwrap();
        let long_ago = Instant::now().checked_sub(FRESH_FOR * 2).expect("an instant in the past");
        names.known.lock().unwrap().insert("node-b.invalid".into(), Known { addresses: vec![address], at: long_ago });
        assert!(resolve(&names, "node-b.invalid").await.is_err(), "the node is gone; its old address is not used");
    }

    #[tokio::test]
    async fn a_name_never_known_fails() {
        assert!(resolve(&PeerNames::default(), "node-c.invalid").await.is_err());
    }
}
