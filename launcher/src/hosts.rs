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
    }
}
