//! Which transport a datagram on a worker's socket belongs to, in O(1).
//!
//! STUN binding requests name the transport in their USERNAME (`local:remote` ufrags), so
//! they are routed by the local ufrag through a hash map. Every other datagram (DTLS,
//! SRTP, SRTCP) is routed by the source address learned from the STUN requests that
//! transport accepted. str0m's `Rtc::accepts` is only used as a final check by the worker,
//! never to scan transports.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;

/// STUN's magic cookie (RFC 5389).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const HEADER_LEN: usize = 20;

/// Whether a datagram is STUN: a first byte of 0 to 3 (RFC 7983's demultiplexing; DTLS is
/// 20 to 63, RTP and RTCP 128 to 191), the magic cookie, and a length that fits.
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN
        && buf[0] < 4
        && buf[4..8] == MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([buf[2], buf[3]])) + HEADER_LEN <= buf.len()
}

/// The USERNAME attribute of a STUN message split at its first `:` into (the receiver's
/// ufrag, the sender's ufrag). `None` for anything else, including malformed attributes.
pub fn stun_usernames(buf: &[u8]) -> Option<(&str, &str)> {
    if !is_stun(buf) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let mut attrs = &buf[HEADER_LEN..HEADER_LEN + len];
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let size = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + size)?;
        if kind == ATTR_USERNAME {
            let text = std::str::from_utf8(value).ok()?;
            return text.split_once(':');
        }
        let padded = 4 + size.div_ceil(4) * 4;
        attrs = attrs.get(padded..)?;
    }
    None
}

/// The routing tables of one worker. `K` is the worker's transport key.
#[derive(Debug)]
pub struct Demux<K> {
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
    addrs_of: HashMap<K, Vec<SocketAddr>>,
}

impl<K> Default for Demux<K> {
    fn default() -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            addrs_of: HashMap::new(),
        }
    }
}

/// Where a datagram goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a, K> {
    /// A STUN request for the transport, with the remote ufrag it carries.
    Stun { key: K, remote_ufrag: &'a str },
    /// Another datagram from an address the transport has accepted STUN from.
    Known(K),
    /// Nobody's.
    Unknown,
}

impl<K: Copy + Eq + Hash> Demux<K> {
    pub fn add_transport(&mut self, key: K, local_ufrag: &str) {
        self.by_ufrag.insert(local_ufrag.to_string(), key);
    }

    pub fn remove_transport(&mut self, key: K, local_ufrag: &str) {
        if self.by_ufrag.get(local_ufrag) == Some(&key) {
            self.by_ufrag.remove(local_ufrag);
        }
        for addr in self.addrs_of.remove(&key).unwrap_or_default() {
            if self.by_addr.get(&addr) == Some(&key) {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// A transport accepted a STUN request from `addr`: later datagrams from there are
    /// its. An address moves to the transport that last accepted it.
    pub fn learn(&mut self, key: K, addr: SocketAddr) {
        if let Some(previous) = self.by_addr.insert(addr, key) {
            if previous == key {
                return;
            }
            if let Some(list) = self.addrs_of.get_mut(&previous) {
                list.retain(|a| *a != addr);
            }
        }
        self.addrs_of.entry(key).or_default().push(addr);
    }

    pub fn route<'a>(&self, buf: &'a [u8], source: SocketAddr) -> Route<'a, K> {
        if let Some((local, remote)) = stun_usernames(buf) {
            return match self.by_ufrag.get(local) {
                Some(key) => Route::Stun {
                    key: *key,
                    remote_ufrag: remote,
                },
                None => Route::Unknown,
            };
        }
        match self.by_addr.get(&source) {
            Some(key) => Route::Known(*key),
            None => Route::Unknown,
        }
    }

    pub fn has_ufrag(&self, local_ufrag: &str) -> bool {
        self.by_ufrag.contains_key(local_ufrag)
    }

    pub fn transports(&self) -> usize {
        self.by_ufrag.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request with the given USERNAME (and a PRIORITY attribute before it,
    /// to exercise attribute walking).
    pub(crate) fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0024u16.to_be_bytes());
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&[0, 0, 0, 1]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn usernames_are_read_from_stun_only() {
        let req = binding_request("srv1:cli9");
        assert!(is_stun(&req));
        assert_eq!(stun_usernames(&req), Some(("srv1", "cli9")));
        // DTLS (first byte 22) and RTP (0x80) are not STUN.
        let mut dtls = req.clone();
        dtls[0] = 22;
        assert_eq!(stun_usernames(&dtls), None);
        let mut rtp = req.clone();
        rtp[0] = 0x80;
        assert_eq!(stun_usernames(&rtp), None);
        // A length past the end, a truncated attribute, no colon: nothing.
        let mut long = req.clone();
        long[3] = 0xff;
        assert_eq!(stun_usernames(&long), None);
        let truncated = &req[..req.len() - 8];
        let mut fixed = truncated.to_vec();
        let len = (fixed.len() - HEADER_LEN) as u16;
        fixed[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(stun_usernames(&fixed), None);
        assert_eq!(stun_usernames(&binding_request("nocolon")), None);
        assert_eq!(stun_usernames(&[]), None);
    }

    #[test]
    fn stun_by_ufrag_then_media_by_learned_address() {
        let mut demux = Demux::default();
        demux.add_transport(1u64, "aaaa");
        demux.add_transport(2u64, "bbbb");
        let req = binding_request("bbbb:peer");
        assert_eq!(
            demux.route(&req, addr(5000)),
            Route::Stun {
                key: 2,
                remote_ufrag: "peer"
            }
        );
        assert_eq!(
            demux.route(&binding_request("zzzz:peer"), addr(5000)),
            Route::Unknown
        );
        let media = [0x80u8, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(demux.route(&media, addr(5000)), Route::Unknown);
        demux.learn(2, addr(5000));
        assert_eq!(demux.route(&media, addr(5000)), Route::Known(2));
        assert_eq!(demux.route(&media, addr(5001)), Route::Unknown);

        // The address moves when another transport accepts it.
        demux.learn(1, addr(5000));
        assert_eq!(demux.route(&media, addr(5000)), Route::Known(1));
        demux.remove_transport(2, "bbbb");
        assert_eq!(demux.route(&media, addr(5000)), Route::Known(1));
        assert_eq!(demux.route(&req, addr(5000)), Route::Unknown);
        demux.remove_transport(1, "aaaa");
        assert_eq!(demux.route(&media, addr(5000)), Route::Unknown);
        assert_eq!(demux.transports(), 0);
    }
}
