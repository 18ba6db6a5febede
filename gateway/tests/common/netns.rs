//! A network the partition test makes itself: a network namespace holding one gateway node,
//! joined to the host by two veth pairs in a private /30 each — one to Redis, one to the
//! clients — so either link can be cut (`ip link set … down`) and healed. Needs root and
//! `ip netns` (Debian's iproute2); without them the test fails with a message saying so (the
//! test command runs as root). Namespace and links are deleted on drop.

#![allow(dead_code)]

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::probe::Node;

/// Runs `ip ARGS`; panics with `ip`'s stderr if it fails.
fn ip(args: &[&str]) {
    let output = std::process::Command::new("ip").args(args).output().unwrap_or_else(|error| {
        panic!("this test needs `ip` from iproute2 (the test command runs as root with it): {error}")
    });
    assert!(
        output.status.success(),
        "`ip {}` failed: {} (this test creates network namespaces and veth pairs: it must run as root, as the test command does in CI)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

pub struct Partitionable {
    pub namespace: String,
    /// Host-side ends of the Redis and client links.
    redis_host_link: String,
    client_host_link: String,
    /// Addresses: the host and namespace ends of each /30.
    pub redis_host: String,
    pub redis_ns: String,
    pub client_host: String,
    pub client_ns: String,
}

impl Partitionable {
    /// Creates the namespace and both links, up, with addresses; fails clearly without root.
    pub async fn create() -> Self {
        // SAFETY-free check: geteuid via /proc (no libc dependency).
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().nth(1).unwrap_or("").to_owned()))
            })
            .unwrap_or_default();
        assert_eq!(
            uid, "0",
            "the partition tests create network namespaces and veth pairs and must run as root (CI runs the test command as root)"
        );
        // Names and /30 subnets (in 10.213.0.0/16 and 10.214.0.0/16) chosen from the pid and a
        // count of the networks this process made, so parallel tests and runs do not collide.
        static MADE: AtomicU32 = AtomicU32::new(0);
        let n = (std::process::id() % 4_000) * 4 + MADE.fetch_add(1, Ordering::Relaxed) % 4;
        let (x, y) = (n / 64, (n % 64) * 4);
        let namespace = format!("hgpart{n}");
        let this = Self {
            redis_host_link: format!("hgr{n}h"),
            client_host_link: format!("hgc{n}h"),
            redis_host: format!("10.213.{}.{}", x, y + 1),
            redis_ns: format!("10.213.{}.{}", x, y + 2),
            client_host: format!("10.214.{}.{}", x, y + 1),
            client_ns: format!("10.214.{}.{}", x, y + 2),
            namespace,
        };
        // Leftovers of an earlier crashed run with the same pid.
        let _ = std::process::Command::new("ip").args(["netns", "del", &this.namespace]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &this.namespace]);
        let ns = this.namespace.clone();
        for (host_link, host_addr, ns_addr) in [
            (&this.redis_host_link, &this.redis_host, &this.redis_ns),
            (&this.client_host_link, &this.client_host, &this.client_ns),
        ] {
            let peer = format!("{}n", &host_link[..host_link.len() - 1]);
            ip(&["link", "add", host_link, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &peer, "netns", &ns]);
            ip(&["addr", "add", &format!("{host_addr}/30"), "dev", host_link]);
            ip(&["link", "set", host_link, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{ns_addr}/30"), "dev", &peer]);
            ip(&["-n", &ns, "link", "set", &peer, "up"]);
        }
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        this
    }

    /// A `redis-server` on a free port, listening on loopback and on the host end of the Redis
    /// link.
    pub async fn redis(&self) -> NetRedis {
        let port = testkit::free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", &self.redis_host])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"])
            .args(["--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is on PATH");
        let redis = NetRedis { port, host: self.redis_host.clone(), _child: child };
        crate::probe::within("redis-server answers", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        redis
    }

    /// A gateway inside the namespace, listening on the namespace end of the client link.
    pub async fn node_in_namespace(&self, args: &[String]) -> Node {
        Node::start_through(&["ip", "netns", "exec", &self.namespace], &format!("{}:0", self.client_ns), args).await
    }

    pub async fn cut_redis_link(&self) {
        ip(&["link", "set", &self.redis_host_link, "down"]);
    }

    pub async fn heal_redis_link(&self) {
        ip(&["link", "set", &self.redis_host_link, "up"]);
    }

    pub async fn cut_client_link(&self) {
        ip(&["link", "set", &self.client_host_link, "down"]);
    }

    pub async fn heal_client_link(&self) {
        ip(&["link", "set", &self.client_host_link, "up"]);
    }
}

impl Drop for Partitionable {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth ends, and with them the host ends.
        for args in [
            vec!["netns", "del", self.namespace.as_str()],
            vec!["link", "del", self.redis_host_link.as_str()],
            vec!["link", "del", self.client_host_link.as_str()],
        ] {
            let _ = std::process::Command::new("ip").args(&args).stderr(Stdio::null()).status();
        }
    }
}

pub struct NetRedis {
    pub port: u16,
    host: String,
    _child: Child,
}

impl NetRedis {
    /// The URL for nodes on the host (loopback).
    pub fn url_for_host(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL for the node in the namespace (over the Redis link).
    pub fn url_for_namespace(&self) -> String {
        format!("redis://{}:{}", self.host, self.port)
    }
}
