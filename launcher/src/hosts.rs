//! Which host names mean this host.

/// This host's name, as the system reports it.
pub fn this_host() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// Whether `name` (as written in a hostfile or `--host`, maybe `user@host`) is this host.
///
/// `localhost`, `127.0.0.1`, `::1` and this host's name (short or fully qualified) are; other
/// loopback addresses such as `127.0.0.2` are not, so that they can stand for other hosts.
pub fn is_local(name: &str) -> bool {
    let name = name.rsplit('@').next().unwrap_or(name);
    let me = this_host();
    let short = |n: &str| n.split('.').next().unwrap_or(n).to_ascii_lowercase();
    matches!(name, "localhost" | "127.0.0.1" | "::1")
        || name.eq_ignore_ascii_case(&me)
        || (name.parse::<std::net::IpAddr>().is_err() && short(name) == short(&me))
}

/// The IP address of `host` (`user@host` allowed): a literal address, or the name resolved.
pub fn address_of(host: &str) -> Option<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let name = host.rsplit('@').next().unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = name.parse() {
        return Some(ip);
    }
    (name, 0).to_socket_addrs().ok()?.next().map(|a| a.ip())
}

/// The address of this host that `hosts` can reach it on: loopback when they are all loopback
/// addresses (several "hosts" on one machine), else the address the system would send from to
/// reach the first of them (found without sending anything).
pub fn reaching(hosts: &[&str]) -> std::io::Result<std::net::IpAddr> {
    let addresses: Vec<std::net::IpAddr> = hosts
        .iter()
        .map(|h| {
            address_of(h).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("cannot resolve host '{h}'"))
            })
        })
        .collect::<std::io::Result<_>>()?;
    if addresses.iter().all(|a| a.is_loopback()) {
        return Ok(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let target = addresses[0];
    let socket = std::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    // connecting a UDP socket only picks the route; nothing is sent
    socket.connect((target, 9))?;
    Ok(socket.local_addr()?.ip())
}

/// The first IPv4 address (else IPv6) of network interface `name`, for `--iface`.
pub fn interface_address(name: &str) -> Result<std::net::IpAddr, String> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    let mut names = std::collections::BTreeSet::new();
    let mut found: Option<std::net::IpAddr> = None;
    for a in addrs {
        names.insert(a.interface_name.clone());
        if a.interface_name != name {
            continue;
        }
        let Some(addr) = a.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            return Ok(std::net::IpAddr::V4(v4.ip()));
        }
        if let Some(v6) = addr.as_sockaddr_in6() {
            found.get_or_insert(std::net::IpAddr::V6(v6.ip()));
        }
    }
    found.ok_or_else(|| {
        let have: Vec<String> = names.into_iter().collect();
        format!("--iface {name}: no such interface with an IP address (this host has: {})", have.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names() {
        assert!(is_local("localhost"));
        assert!(is_local("127.0.0.1"));
        assert!(is_local(&this_host()));
        assert!(is_local(&format!("me@{}", this_host())));
        assert!(!is_local("127.0.0.2"));
        assert!(!is_local("node-that-does-not-exist-42"));
        assert_eq!(interface_address("lo"), Ok(std::net::IpAddr::from([127, 0, 0, 1])));
        let missing = interface_address("no-such-if0").expect_err("missing");
        assert!(missing.contains("lo"), "{missing}");
    }
}
