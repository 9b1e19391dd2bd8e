//! Hostfiles and `--host` lists.
//!
//! One parser reads both hostfile grammars, line by line:
//!
//! * Open MPI: `host [slots=N] [max_slots=M]`, with the aliases `slot`, `cpu`, `count` for
//!   `slots` and `max-slots` for `max_slots`; spaces around `=` are allowed.
//! * MPICH: `host:N`, or `host` alone for one slot.
//!
//! `#` starts a comment, blank lines are ignored, tokens are separated by whitespace. A host
//! named again on another line adds its slots to the first entry (Open MPI and MPICH both do
//! so), and its `max_slots` becomes the largest one given. Host names are `[user@]name` where
//! `name` is a DNS name, an IPv4 address, or an IPv6 address written `[addr]`, `[addr]:N` or bare
//! (`fe80::1`, which then carries no slot count).

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Largest slot count (or `max_slots`) accepted for one host; larger numbers are reported as
/// "too many slots".
pub const MAX_SLOTS_PER_HOST: usize = 1_000_000;

/// One host with its slots, as written by the user (repeated entries merged, first appearance order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// Host name as written, including any `user@` prefix; IPv6 addresses without brackets.
    pub name: String,
    /// Number of slots (ranks the host takes before it counts as oversubscribed); at least 1.
    pub slots: usize,
    /// Hard limit on ranks for this host even with `--oversubscribe`; `None` means unlimited.
    pub max_slots: Option<usize>,
}

/// Error that names where (file and 1-based line, or "--host"), the offending token, and what is wrong.
///
/// Display forms:
/// * `"{source}:{line}: {message} (at '{token}')"` for an error on a hostfile line;
/// * `"--host: {message} (at '{token}')"` for a `--host` list (`line` is 0);
/// * `"{source}: {message}"` for errors about the whole file (unreadable, no hosts), where
///   `line` is 0 and `token` is empty.
///
/// `Display` and `Error` are written by hand: `thiserror` would take a field named `source`
/// for the underlying error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostfileError {
    /// Where the text came from: the hostfile path as given, or `--host`.
    pub source: String,
    /// 1-based line number in the hostfile; 0 for `--host` lists and whole-file errors.
    pub line: usize,
    /// The offending token as written; empty for whole-file errors.
    pub token: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for HostfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.source, self.message)?;
        } else {
            write!(f, "{}:{}: {}", self.source, self.line, self.message)?;
        }
        if !self.token.is_empty() {
            write!(f, " (at '{}')", self.token)?;
        }
        Ok(())
    }
}

impl std::error::Error for HostfileError {}

/// Where a token is being parsed, to build errors.
struct Ctx<'a> {
    source: &'a str,
    line: usize,
}

impl Ctx<'_> {
    fn err(&self, token: &str, message: impl Into<String>) -> HostfileError {
        HostfileError {
            source: self.source.to_string(),
            line: self.line,
            token: token.to_string(),
            message: message.into(),
        }
    }
}

/// Hosts gathered so far, merging repeated names.
#[derive(Default)]
struct Hosts {
    list: Vec<HostSpec>,
    index: HashMap<String, usize>,
}

impl Hosts {
    /// Adds one entry; a name seen before adds its slots and keeps the largest `max_slots`.
    fn add(
        &mut self,
        ctx: &Ctx<'_>,
        token: &str,
        name: String,
        slots: usize,
        max_slots: Option<usize>,
    ) -> Result<(), HostfileError> {
        let Some(&i) = self.index.get(&name) else {
            self.index.insert(name.clone(), self.list.len());
            self.list.push(HostSpec { name, slots, max_slots });
            return Ok(());
        };
        let entry = &mut self.list[i];
        let total = entry.slots.checked_add(slots).filter(|&t| t <= MAX_SLOTS_PER_HOST).ok_or_else(|| {
            ctx.err(
                token,
                format!(
                    "too many slots for host '{name}' in total (more than {MAX_SLOTS_PER_HOST}); \
                         repeated lines for a host add up their slots, remove some"
                ),
            )
        })?;
        let max = match (entry.max_slots, max_slots) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(m) = max
            && m < total
        {
            return Err(ctx.err(
                token,
                format!(
                    "host '{name}' now has {total} slots in total (repeated lines add up), \
                     more than its max_slots={m}; raise max_slots or remove a line for this host"
                ),
            ));
        }
        entry.slots = total;
        entry.max_slots = max;
        Ok(())
    }
}

/// Reads and parses a hostfile (Open MPI or MPICH grammar, see the module docs).
///
/// Errors if the file cannot be read, on any malformed line, and if it lists no host at all
/// ("no hosts in hostfile"). Messages name the path as given.
pub fn parse_hostfile(path: &Path) -> Result<Vec<HostSpec>, HostfileError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| HostfileError {
        source: source.clone(),
        line: 0,
        token: String::new(),
        message: format!("cannot read hostfile: {e}"),
    })?;
    parse_hostfile_text(&source, &text)
}

/// Parses hostfile text; `source` is the name used in messages (usually the path).
///
/// Like [`parse_hostfile`], text that lists no host at all is an error ("no hosts in hostfile").
pub fn parse_hostfile_text(source: &str, text: &str) -> Result<Vec<HostSpec>, HostfileError> {
    let mut hosts = Hosts::default();
    for (i, raw) in text.lines().enumerate() {
        let ctx = Ctx { source, line: i + 1 };
        let content = raw.split('#').next().unwrap_or("");
        let tokens: Vec<&str> = content.split_whitespace().collect();
        let Some((&host_token, rest)) = tokens.split_first() else {
            continue;
        };
        if host_token.contains('=') {
            return Err(ctx.err(
                host_token,
                "expected a host name first, found an option; write the host name before its \
                 options, e.g. 'node1 slots=4'",
            ));
        }
        let (name, colon_slots) = parse_host_token(&ctx, host_token)?;
        let mut slots: Option<(usize, String)> = colon_slots.map(|n| (n, host_token.to_string()));
        let mut explicit_slots_key = false;
        let mut max_slots: Option<(usize, String)> = None;
        for opt in join_options(rest) {
            let Some((key, value)) = opt.split_once('=') else {
                return Err(ctx.err(
                    &opt,
                    "unexpected token after the host name; options must be key=value such as \
                     slots=4 or max_slots=8, and each host goes on its own line",
                ));
            };
            match key.to_ascii_lowercase().as_str() {
                "slots" | "slot" | "cpu" | "count" => {
                    if explicit_slots_key {
                        return Err(ctx.err(&opt, "slots given twice on one line; keep only one slots=N"));
                    }
                    if colon_slots.is_some() {
                        return Err(ctx.err(
                            &opt,
                            format!(
                                "slot count given both as '{host_token}' and as '{key}='; \
                                 use either host:N or slots=N, not both"
                            ),
                        ));
                    }
                    explicit_slots_key = true;
                    let n = parse_count(value, "slot count").map_err(|m| ctx.err(&opt, m))?;
                    slots = Some((n, opt.clone()));
                }
                "max_slots" | "max-slots" => {
                    if max_slots.is_some() {
                        return Err(
                            ctx.err(&opt, "max_slots given twice on one line; keep only one max_slots=N")
                        );
                    }
                    let n = parse_count(value, "max_slots").map_err(|m| ctx.err(&opt, m))?;
                    max_slots = Some((n, opt.clone()));
                }
                "" => {
                    return Err(
                        ctx.err(&opt, "missing option name before '='; expected slots=N or max_slots=N")
                    );
                }
                _ => {
                    return Err(
                        ctx.err(&opt, format!("unknown option '{key}'; expected slots=N or max_slots=N"))
                    );
                }
            }
        }
        let slot_count = slots.as_ref().map_or(1, |(n, _)| *n);
        if let Some((m, tok)) = &max_slots
            && *m < slot_count
        {
            return Err(ctx.err(
                tok,
                format!(
                    "max_slots={m} is smaller than the {slot_count} slot(s) of this host; \
                     raise max_slots to at least {slot_count} or lower the slot count"
                ),
            ));
        }
        hosts.add(&ctx, host_token, name, slot_count, max_slots.map(|(m, _)| m))?;
    }
    if hosts.list.is_empty() {
        return Err(HostfileError {
            source: source.to_string(),
            line: 0,
            token: String::new(),
            message: "no hosts in hostfile; add one host per line, e.g. 'node1 slots=4' or 'node1:4'"
                .to_string(),
        });
    }
    Ok(hosts.list)
}

/// Parses the `-H/--host` option: comma-separated entries `host[:N]` (same host syntax as a
/// hostfile, no `key=value` options). Repeated entries add their slots (`-H a,a,b` gives `a`
/// two slots). Errors use source `--host` and line 0.
pub fn parse_host_list(list: &str) -> Result<Vec<HostSpec>, HostfileError> {
    let ctx = Ctx { source: "--host", line: 0 };
    if list.trim().is_empty() {
        return Err(ctx.err(list, "empty host list; give hosts like -H node1:2,node2"));
    }
    let mut hosts = Hosts::default();
    for entry in list.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(ctx.err(
                list,
                "empty entry in host list; separate hosts with single commas and no trailing \
                 comma, e.g. -H node1:2,node2",
            ));
        }
        let (name, slots) = parse_host_token(&ctx, entry)?;
        hosts.add(&ctx, entry, name, slots.unwrap_or(1), None)?;
    }
    Ok(hosts.list)
}

/// Joins option tokens split around `=` (`slots = 4`, `slots= 4`, `slots =4`) into one token.
fn join_options(tokens: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let mut joined = tokens[i].to_string();
        i += 1;
        if !joined.contains('=') && i < tokens.len() && tokens[i].starts_with('=') {
            joined.push_str(tokens[i]);
            i += 1;
        }
        if joined.ends_with('=')
            && joined.matches('=').count() == 1
            && i < tokens.len()
            && !tokens[i].contains('=')
        {
            joined.push_str(tokens[i]);
            i += 1;
        }
        out.push(joined);
    }
    out
}

/// Parses `[user@]host[:N]`, `[user@][v6]`, `[user@][v6]:N` or `[user@]v6` (bare, 2+ colons).
/// Returns the name to keep (with `user@`, without IPv6 brackets) and the `:N` count if any.
fn parse_host_token(ctx: &Ctx<'_>, token: &str) -> Result<(String, Option<usize>), HostfileError> {
    let (user, rest) = match token.split_once('@') {
        Some((user, rest)) => {
            if user.is_empty() {
                return Err(ctx.err(token, "empty user name before '@'; write user@host or just host"));
            }
            if rest.contains('@') {
                return Err(ctx.err(token, "more than one '@' in host; write user@host"));
            }
            if !valid_user(user) {
                return Err(ctx.err(
                    token,
                    format!(
                        "invalid user name '{user}': use letters, digits, '-', '.' and '_', \
                         not starting with '-'"
                    ),
                ));
            }
            if rest.is_empty() {
                return Err(ctx.err(token, format!("empty host name after '{user}@'; write {user}@host")));
            }
            (Some(user), rest)
        }
        None => (None, token),
    };

    let (host, count) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err(ctx.err(token, "missing ']' after IPv6 address; write [addr] or [addr]:N"));
        };
        check_ipv6(ctx, token, addr)?;
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(n) => (addr, Some(n)),
                None => {
                    return Err(ctx
                        .err(token, "unexpected text after ']'; write [addr] or [addr]:N for an IPv6 host"));
                }
            },
        }
    } else {
        match rest.matches(':').count() {
            0 => {
                check_name(ctx, token, rest)?;
                (rest, None)
            }
            1 => {
                let (host, n) = rest.split_once(':').unwrap_or((rest, ""));
                check_name(ctx, token, host)?;
                (host, Some(n))
            }
            _ => {
                check_ipv6(ctx, token, rest)?;
                (rest, None)
            }
        }
    };
    let slots = match count {
        Some(n) => Some(parse_count(n, "slot count").map_err(|m| ctx.err(token, m))?),
        None => None,
    };
    let name = match user {
        Some(user) => format!("{user}@{host}"),
        None => host.to_string(),
    };
    Ok((name, slots))
}

fn valid_user(user: &str) -> bool {
    !user.starts_with('-') && user.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// Checks a DNS-ish name or IPv4 address.
fn check_name(ctx: &Ctx<'_>, token: &str, host: &str) -> Result<(), HostfileError> {
    if host.is_empty() {
        return Err(ctx.err(token, "empty host name; write host or host:N"));
    }
    if let Some(bad) = host.chars().find(|&c| !(c.is_ascii_alphanumeric() || "-._".contains(c))) {
        return Err(ctx.err(
            token,
            format!(
                "invalid host name '{host}': character '{bad}' is not allowed; host names may \
                 contain only letters, digits, '-', '.' and '_' (IPv6 addresses go in brackets)"
            ),
        ));
    }
    if !host.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ctx.err(
            token,
            format!("invalid host name '{host}': a host name must start with a letter or digit"),
        ));
    }
    if host.contains('.')
        && host.chars().all(|c| c.is_ascii_digit() || c == '.')
        && host.parse::<Ipv4Addr>().is_err()
    {
        return Err(ctx.err(
            token,
            format!("invalid IPv4 address '{host}'; write four numbers 0-255 separated by dots"),
        ));
    }
    Ok(())
}

/// Checks an IPv6 address, with an optional `%zone` suffix.
fn check_ipv6(ctx: &Ctx<'_>, token: &str, addr: &str) -> Result<(), HostfileError> {
    let (ip, zone) = match addr.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (addr, None),
    };
    let zone_ok = zone
        .is_none_or(|z| !z.is_empty() && z.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
    if ip.parse::<Ipv6Addr>().is_err() || !zone_ok {
        return Err(ctx.err(
            token,
            format!(
                "invalid IPv6 address '{addr}'; write e.g. [fe80::1] or [fe80::1]:4 (a host name \
                 has at most one ':', before its slot count)"
            ),
        ));
    }
    Ok(())
}

/// Parses a slot count or max_slots: a whole number from 1 to [`MAX_SLOTS_PER_HOST`].
/// Returns the message on error.
fn parse_count(value: &str, what: &str) -> Result<usize, String> {
    if value.is_empty() {
        return Err(format!("missing {what}; write a whole number of at least 1, e.g. slots=4 or node1:4"));
    }
    if !value.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{what} must be a positive whole number, got '{value}'; write e.g. slots=4 or node1:4"
        ));
    }
    let digits = value.trim_start_matches('0');
    if digits.is_empty() {
        return Err(format!("{what} must be at least 1, got '{value}'; write e.g. slots=4 or node1:4"));
    }
    match digits.parse::<usize>() {
        Ok(n) if n <= MAX_SLOTS_PER_HOST => Ok(n),
        _ => Err(format!(
            "too many slots: {what} {value} is more than {MAX_SLOTS_PER_HOST}; write the real number \
             of slots"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(name: &str, slots: usize, max_slots: Option<usize>) -> HostSpec {
        HostSpec { name: name.to_string(), slots, max_slots }
    }

    fn parse(text: &str) -> Vec<HostSpec> {
        match parse_hostfile_text("hosts.txt", text) {
            Ok(v) => v,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// Parses, expects an error, checks line and token and that both appear in Display.
    fn parse_err(text: &str, line: usize, token: &str) -> HostfileError {
        let e = match parse_hostfile_text("hosts.txt", text) {
            Ok(v) => panic!("expected an error for {text:?}, got {v:?}"),
            Err(e) => e,
        };
        assert_eq!(e.source, "hosts.txt");
        assert_eq!(e.line, line, "{e}");
        assert_eq!(e.token, token, "{e}");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("hosts.txt:{line}: ")), "{shown}");
        assert!(shown.ends_with(&format!(" (at '{token}')")), "{shown}");
        e
    }

    fn list_err(list: &str, token: &str) -> HostfileError {
        let e = match parse_host_list(list) {
            Ok(v) => panic!("expected an error for {list:?}, got {v:?}"),
            Err(e) => e,
        };
        assert_eq!((e.source.as_str(), e.line, e.token.as_str()), ("--host", 0, token), "{e}");
        assert!(e.to_string().starts_with("--host: "), "{e}");
        assert!(e.to_string().ends_with(&format!(" (at '{token}')")), "{e}");
        e
    }

    #[test]
    fn open_mpi_grammar() {
        let v = parse("node1 slots=4\nnode2 slots=2 max_slots=6\nnode3\n");
        assert_eq!(v, vec![h("node1", 4, None), h("node2", 2, Some(6)), h("node3", 1, None)]);
    }

    #[test]
    fn mpich_grammar() {
        let v = parse("node1:4\nnode2\nnode3:16\n");
        assert_eq!(v, vec![h("node1", 4, None), h("node2", 1, None), h("node3", 16, None)]);
    }

    #[test]
    fn mixed_grammars_in_one_file() {
        let v = parse("a:2\nb slots=3\nc:1 max_slots=5\n");
        assert_eq!(v, vec![h("a", 2, None), h("b", 3, None), h("c", 1, Some(5))]);
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let text = "# cluster\n\n   \nnode1 slots=2 # two cores\n\t# indented comment\nnode2\tslots=3\r\n#node3 slots=9\nnode4#trailing\n";
        let v = parse(text);
        assert_eq!(v, vec![h("node1", 2, None), h("node2", 3, None), h("node4", 1, None)]);
    }

    #[test]
    fn slot_aliases() {
        let v = parse("a slots=2\nb slot=3\nc cpu=4\nd count=5\ne SLOTS=6\n");
        let slots: Vec<usize> = v.iter().map(|x| x.slots).collect();
        assert_eq!(slots, vec![2, 3, 4, 5, 6]);
    }

    #[test]
    fn max_slots_aliases() {
        let v = parse("a max_slots=3\nb max-slots=4 slots=2\n");
        assert_eq!(v, vec![h("a", 1, Some(3)), h("b", 2, Some(4))]);
    }

    #[test]
    fn spaces_around_equals() {
        let v = parse("a slots = 3\nb slots= 4\nc slots =5 max_slots = 9\n");
        assert_eq!(v, vec![h("a", 3, None), h("b", 4, None), h("c", 5, Some(9))]);
    }

    #[test]
    fn repeated_hosts_add_slots_in_first_appearance_order() {
        let v = parse("a slots=2\nb\na slots=3\na\nb:4\n");
        assert_eq!(v, vec![h("a", 6, None), h("b", 5, None)]);
    }

    #[test]
    fn repeated_hosts_keep_largest_max_slots() {
        let v = parse("a max_slots=4\na slots=2 max_slots=8\nb max_slots=5\nb\nc\nc max_slots=3\n");
        assert_eq!(v, vec![h("a", 3, Some(8)), h("b", 2, Some(5)), h("c", 2, Some(3))]);
    }

    #[test]
    fn repeated_host_exceeding_its_max_slots_is_an_error() {
        let e = parse_err("a slots=2 max_slots=2\nb\na\n", 3, "a");
        assert!(e.message.contains("max_slots=2"), "{e}");
        assert!(e.message.contains("3 slots"), "{e}");
    }

    #[test]
    fn ipv6_forms() {
        let v = parse("[::1]\n[fe80::1]:4\n::2\nfe80::1:4\n[fe80::3%eth0]:2 max_slots=3\n");
        assert_eq!(
            v,
            vec![
                h("::1", 1, None),
                h("fe80::1", 4, None),
                h("::2", 1, None),
                h("fe80::1:4", 1, None),
                h("fe80::3%eth0", 2, Some(3)),
            ]
        );
    }

    #[test]
    fn ipv6_bracketed_and_bare_merge() {
        let v = parse("[::1]:2\n::1\n");
        assert_eq!(v, vec![h("::1", 3, None)]);
    }

    #[test]
    fn ipv4_and_user_at_host() {
        let v = parse("10.0.0.1:2\nalice@node1 slots=3\nbob@10.0.0.2\nroot@[::1]:2\nnode_5.example-x.org\n");
        assert_eq!(
            v,
            vec![
                h("10.0.0.1", 2, None),
                h("alice@node1", 3, None),
                h("bob@10.0.0.2", 1, None),
                h("root@::1", 2, None),
                h("node_5.example-x.org", 1, None),
            ]
        );
    }

    #[test]
    fn user_at_host_is_distinct_from_host() {
        let v = parse("node1\nalice@node1\nnode1\n");
        assert_eq!(v, vec![h("node1", 2, None), h("alice@node1", 1, None)]);
    }

    #[test]
    fn leading_zeros_are_accepted() {
        assert_eq!(parse("a:04\n"), vec![h("a", 4, None)]);
    }

    #[test]
    fn non_numeric_colon_count() {
        let e = parse_err("ok\nnode1:abc\n", 2, "node1:abc");
        assert!(e.message.contains("positive whole number"), "{e}");
    }

    #[test]
    fn zero_colon_count() {
        let e = parse_err("node1:0\n", 1, "node1:0");
        assert!(e.message.contains("at least 1"), "{e}");
    }

    #[test]
    fn missing_colon_count() {
        let e = parse_err("node1:\n", 1, "node1:");
        assert!(e.message.contains("missing slot count"), "{e}");
    }

    #[test]
    fn zero_slots_key() {
        let e = parse_err("a\n\nnode1 slots=0\n", 3, "slots=0");
        assert!(e.message.contains("at least 1"), "{e}");
    }

    #[test]
    fn negative_slots_key() {
        let e = parse_err("node1 slots=-2\n", 1, "slots=-2");
        assert!(e.message.contains("positive whole number"), "{e}");
    }

    #[test]
    fn empty_slots_value() {
        let e = parse_err("node1 slots=\n", 1, "slots=");
        assert!(e.message.contains("missing slot count"), "{e}");
    }

    #[test]
    fn non_numeric_max_slots() {
        let e = parse_err("node1 max_slots=many\n", 1, "max_slots=many");
        assert!(e.message.contains("max_slots"), "{e}");
    }

    #[test]
    fn unknown_key() {
        let e = parse_err("# c\nnode1 foo=1\n", 2, "foo=1");
        assert!(e.to_string().contains("unknown option 'foo'; expected slots=N or max_slots=N"), "{e}");
    }

    #[test]
    fn missing_key_name() {
        let e = parse_err("node1 =4\n", 1, "=4");
        assert!(e.message.contains("missing option name"), "{e}");
    }

    #[test]
    fn token_that_is_not_key_value() {
        let e = parse_err("node1 node2\n", 1, "node2");
        assert!(e.message.contains("key=value"), "{e}");
    }

    #[test]
    fn option_before_host() {
        let e = parse_err("slots=4 node1\n", 1, "slots=4");
        assert!(e.message.contains("host name first"), "{e}");
    }

    #[test]
    fn colon_count_and_slots_key_together() {
        let e = parse_err("node1:2 slots=4\n", 1, "slots=4");
        assert!(e.message.contains("both"), "{e}");
        let e = parse_err("node1:2 cpu=4\n", 1, "cpu=4");
        assert!(e.message.contains("both"), "{e}");
    }

    #[test]
    fn max_slots_smaller_than_slots() {
        let e = parse_err("node1 slots=4 max_slots=2\n", 1, "max_slots=2");
        assert!(e.message.contains("smaller"), "{e}");
        // Against the MPICH count too, and against the implicit single slot order-independently.
        parse_err("node1:4 max_slots=3\n", 1, "max_slots=3");
        parse_err("node1 max_slots=2 slots=3\n", 1, "max_slots=2");
    }

    #[test]
    fn duplicate_slots_on_one_line() {
        let e = parse_err("node1 slots=2 slots=3\n", 1, "slots=3");
        assert!(e.message.contains("twice"), "{e}");
        parse_err("node1 slots=2 count=3\n", 1, "count=3");
        parse_err("node1 max_slots=2 max-slots=3\n", 1, "max-slots=3");
    }

    #[test]
    fn invalid_host_names() {
        let e = parse_err("no$de slots=2\n", 1, "no$de");
        assert!(e.message.contains("invalid host name"), "{e}");
        parse_err("-oProxyCommand=x\n", 1, "-oProxyCommand=x");
        parse_err("-node\n", 1, "-node");
        parse_err(":4\n", 1, ":4");
        parse_err("300.1.1.1\n", 1, "300.1.1.1");
        parse_err("node1:2:3:x\n", 1, "node1:2:3:x");
    }

    #[test]
    fn empty_after_user_at() {
        let e = parse_err("alice@ slots=2\n", 1, "alice@");
        assert!(e.message.contains("empty host name after 'alice@'"), "{e}");
        parse_err("@node1\n", 1, "@node1");
        parse_err("a@b@node1\n", 1, "a@b@node1");
        parse_err("-l@node1\n", 1, "-l@node1");
    }

    #[test]
    fn invalid_ipv6() {
        parse_err("[::1\n", 1, "[::1");
        parse_err("[zz::1]:2\n", 1, "[zz::1]:2");
        parse_err("[::1]x\n", 1, "[::1]x");
        parse_err("[::1]:0\n", 1, "[::1]:0");
        parse_err("[node1]\n", 1, "[node1]");
    }

    #[test]
    fn too_many_slots() {
        assert_eq!(parse("a slots=1000000\n"), vec![h("a", 1_000_000, None)]);
        let e = parse_err("a slots=1000001\n", 1, "slots=1000001");
        assert!(e.message.contains("too many slots"), "{e}");
        let e = parse_err("a:99999999999999999999999999\n", 1, "a:99999999999999999999999999");
        assert!(e.message.contains("too many slots"), "{e}");
        let e = parse_err("a slots=600000\na slots=600000\n", 2, "a");
        assert!(e.message.contains("too many slots"), "{e}");
    }

    #[test]
    fn empty_hostfile_is_an_error() {
        for text in ["", "\n\n", "# only comments\n   # here\n"] {
            let e = match parse_hostfile_text("hosts.txt", text) {
                Ok(v) => panic!("expected error, got {v:?}"),
                Err(e) => e,
            };
            assert_eq!((e.line, e.token.as_str()), (0, ""));
            assert!(e.to_string().starts_with("hosts.txt: no hosts in hostfile"), "{e}");
        }
    }

    #[test]
    fn parse_hostfile_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("prun-hostfile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(&path, "node1 slots=2\nnode2:3\n").unwrap();
        assert_eq!(parse_hostfile(&path).unwrap(), vec![h("node1", 2, None), h("node2", 3, None)]);

        std::fs::write(&path, "node1\nnode2 slots=x\n").unwrap();
        let e = parse_hostfile(&path).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with(&format!("{}:2: ", path.display())), "{e}");

        std::fs::write(&path, "# nothing\n").unwrap();
        let e = parse_hostfile(&path).unwrap_err();
        assert!(e.to_string().contains("no hosts in hostfile"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_hostfile() {
        let path = Path::new("/nonexistent/prun/hosts.txt");
        let e = parse_hostfile(path).unwrap_err();
        assert_eq!((e.line, e.token.as_str()), (0, ""));
        let shown = e.to_string();
        assert!(shown.starts_with("/nonexistent/prun/hosts.txt: cannot read hostfile: "), "{shown}");
        assert!(!shown.contains("(at"), "{shown}");
    }

    #[test]
    fn host_list_basic() {
        let v = parse_host_list("h1:2,h2,h3").unwrap();
        assert_eq!(v, vec![h("h1", 2, None), h("h2", 1, None), h("h3", 1, None)]);
    }

    #[test]
    fn host_list_repeats_add_slots() {
        let v = parse_host_list("a,a,b").unwrap();
        assert_eq!(v, vec![h("a", 2, None), h("b", 1, None)]);
        let v = parse_host_list("a:2,b,a:3").unwrap();
        assert_eq!(v, vec![h("a", 5, None), h("b", 1, None)]);
    }

    #[test]
    fn host_list_ipv6_user_and_spaces() {
        let v = parse_host_list("[::1]:2, alice@n1 ,fe80::1,10.1.2.3:4").unwrap();
        assert_eq!(
            v,
            vec![h("::1", 2, None), h("alice@n1", 1, None), h("fe80::1", 1, None), h("10.1.2.3", 4, None)]
        );
    }

    #[test]
    fn host_list_errors() {
        let e = list_err("a,,b", "a,,b");
        assert!(e.message.contains("empty entry"), "{e}");
        list_err("a,b,", "a,b,");
        list_err(",a", ",a");
        let e = parse_host_list("").unwrap_err();
        assert_eq!((e.line, e.token.as_str()), (0, ""));
        assert_eq!(e.to_string(), "--host: empty host list; give hosts like -H node1:2,node2");
        let e = list_err("a,b:0", "b:0");
        assert!(e.message.contains("at least 1"), "{e}");
        list_err("a:x", "a:x");
        list_err("no$de", "no$de");
        list_err("a slots=2", "a slots=2");
        list_err("a:2000000", "a:2000000");
    }

    #[test]
    fn display_formats() {
        let file = HostfileError {
            source: "hosts.txt".into(),
            line: 7,
            token: "foo=1".into(),
            message: "bad".into(),
        };
        assert_eq!(file.to_string(), "hosts.txt:7: bad (at 'foo=1')");
        let list =
            HostfileError { source: "--host".into(), line: 0, token: "a:0".into(), message: "bad".into() };
        assert_eq!(list.to_string(), "--host: bad (at 'a:0')");
        let whole =
            HostfileError { source: "h".into(), line: 0, token: String::new(), message: "bad".into() };
        assert_eq!(whole.to_string(), "h: bad");
    }
}
