//! Connections (or, behind a proxy, requests) per client address.
//!
//! The global `--max-connections` keeps the process within its file
//! descriptors; this cap keeps one client from taking all of them, so a
//! laptop opening silent sockets cannot lock everyone else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct ClientLimit {
    per_client: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection or request of a client; gives its place back when dropped.
pub struct ClientSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ClientLimit {
    pub fn new(per_client: usize) -> Self {
        ClientLimit { per_client, open: Arc::default() }
    }

    pub fn per_client(&self) -> usize {
        self.per_client
    }

    /// A slot for `ip`, or `None` when it already holds `per_client`.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().expect("client counts");
        let n = open.entry(ip).or_default();
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot { ip, open: self.open.clone() })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("client counts");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The client's address as the trusted proxy saw it: the last hop of
/// `X-Forwarded-For` (or of `Forwarded: for=`), which the proxy itself
/// appended; earlier entries are whatever the client claimed.
pub fn forwarded_client(headers: &http::HeaderMap) -> Option<IpAddr> {
    let last = |name: &str| {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last()
    };
    if let Some(ip) = last("x-forwarded-for").and_then(|v| parse_node(v.trim())) {
        return Some(ip);
    }
    let hop = last("forwarded")?;
    hop.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| parse_node(v.trim().trim_matches('"'))).flatten()
    })
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[::1]:5678` or `::1`.
fn parse_node(v: &str) -> Option<IpAddr> {
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    v.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share() {
        let limit = ClientLimit::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = limit.try_acquire(a).unwrap();
        let _s2 = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none());
        assert!(limit.try_acquire(b).is_some());
        drop(s1);
        assert!(limit.try_acquire(a).is_some());
    }

    #[test]
    fn the_proxy_appended_hop_counts() {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 10.1.2.3".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some("10.1.2.3".parse().unwrap()));
        let mut h = http::HeaderMap::new();
        h.insert("forwarded", "for=1.1.1.1, for=\"[2001:db8::1]:4711\";proto=https".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(forwarded_client(&http::HeaderMap::new()), None);
    }
}
