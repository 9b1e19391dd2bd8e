//! Hosts and slots from a batch system's allocation: Slurm (`SLURM_JOB_NODELIST`,
//! `SLURM_TASKS_PER_NODE`) and PBS/Torque (`PBS_NODEFILE`).
//!
//! Precedence: an explicit `--hostfile` or `--host` wins; otherwise a Slurm allocation; otherwise
//! a PBS one; otherwise every rank runs on this host.

use crate::hostfile::HostSpec;

/// Most hosts an allocation may name: more than any cluster has, and a bound on what a host
/// list like `n[1-99999][1-99999]` may make prun allocate.
pub const MAX_NODES: usize = 100_000;

/// Longest host name (RFC 1035).
const MAX_NAME: usize = 253;

fn too_many(list: &str) -> String {
    format!("host list '{list}' names more than {MAX_NODES} hosts")
}

/// Expands a Slurm host list such as `node[01-03,07],gpu5` into host names.
pub fn slurm_nodelist(list: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let bytes = list.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' if depth == 0 => return Err(format!("unbalanced ']' in host list '{list}'")),
            b']' => depth -= 1,
            b',' if depth == 0 => {
                hosts.extend(expand(&list[start..i], list)?);
                if hosts.len() > MAX_NODES {
                    return Err(too_many(list));
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced '[' in host list '{list}'"));
    }
    hosts.extend(expand(&list[start..], list)?);
    if hosts.len() > MAX_NODES {
        return Err(too_many(list));
    }
    Ok(hosts)
}

/// Expands one `prefix[ranges]suffix` entry (brackets may repeat).
fn expand(entry: &str, list: &str) -> Result<Vec<String>, String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(format!("empty entry in host list '{list}'"));
    }
    let Some(open) = entry.find('[') else { return Ok(vec![entry.to_string()]) };
    let close =
        entry[open..].find(']').map(|c| open + c).ok_or_else(|| format!("unbalanced '[' in '{entry}'"))?;
    let (prefix, inner, rest) = (&entry[..open], &entry[open + 1..close], &entry[close + 1..]);
    let tails = expand_or_plain(rest, list)?;
    let longest_tail = tails.iter().map(String::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for part in inner.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let width = lo.len();
        let (a, b): (u64, u64) = match (lo.parse(), hi.parse()) {
            (Ok(a), Ok(b)) if a <= b && b - a < MAX_NODES as u64 => (a, b),
            _ => return Err(format!("bad range '{part}' in host list '{list}'")),
        };
        // checked before anything is made: nested ranges multiply
        let count = ((b - a + 1) as usize).saturating_mul(tails.len());
        if out.len().saturating_add(count) > MAX_NODES {
            return Err(too_many(list));
        }
        if prefix.len() + width.max(hi.len()) + longest_tail > MAX_NAME {
            return Err(format!(
                "'{entry}' in host list '{list}' makes host names over {MAX_NAME} characters"
            ));
        }
        for n in a..=b {
            for tail in &tails {
                out.push(format!("{prefix}{n:0width$}{tail}"));
            }
        }
    }
    Ok(out)
}

fn expand_or_plain(rest: &str, list: &str) -> Result<Vec<String>, String> {
    if rest.is_empty() { Ok(vec![String::new()]) } else { expand(rest, list) }
}

/// Expands Slurm's tasks per node, such as `2(x3),1`, into one count per node.
pub fn slurm_tasks_per_node(text: &str) -> Result<Vec<usize>, String> {
    let mut counts = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (n, times) = match part.split_once('(') {
            Some((n, rep)) => {
                let rep = rep.strip_suffix(')').and_then(|r| r.strip_prefix('x'));
                (
                    n,
                    rep.and_then(|r| r.parse::<usize>().ok())
                        .ok_or_else(|| format!("bad repeat in '{part}'"))?,
                )
            }
            None => (part, 1),
        };
        let n: usize = n.parse().map_err(|_| format!("bad task count '{part}' in '{text}'"))?;
        if counts.len().saturating_add(times) > MAX_NODES {
            return Err(format!("tasks per node '{text}' name more than {MAX_NODES} hosts"));
        }
        counts.extend(std::iter::repeat_n(n, times));
    }
    Ok(counts)
}

/// Hosts from a PBS node file's text: one line per slot, a host named again gets another slot.
pub fn pbs_nodefile(text: &str) -> Vec<HostSpec> {
    let mut hosts: Vec<HostSpec> = Vec::new();
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match hosts.iter_mut().find(|h| h.name == name) {
            Some(h) => h.slots += 1,
            None => hosts.push(HostSpec { name: name.to_string(), slots: 1, max_slots: None }),
        }
    }
    hosts
}

/// The allocation prun runs in, if any: its hosts and where they came from.
pub fn detect() -> Result<Option<(Vec<HostSpec>, String)>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(list) = var("SLURM_JOB_NODELIST").or_else(|| var("SLURM_NODELIST")) {
        let names = slurm_nodelist(&list).map_err(|e| format!("SLURM_JOB_NODELIST: {e}"))?;
        let counts = match var("SLURM_TASKS_PER_NODE") {
            Some(t) => slurm_tasks_per_node(&t).map_err(|e| format!("SLURM_TASKS_PER_NODE: {e}"))?,
            None => vec![1; names.len()],
        };
        if counts.len() != names.len() {
            return Err(format!(
                "the Slurm allocation lists {} nodes but {} task counts (SLURM_TASKS_PER_NODE)",
                names.len(),
                counts.len()
            ));
        }
        let hosts =
            names.into_iter().zip(counts).map(|(name, slots)| HostSpec { name, slots, max_slots: None });
        return Ok(Some((hosts.collect(), "the Slurm allocation".into())));
    }
    if let Some(file) = var("PBS_NODEFILE") {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("PBS_NODEFILE {file}: {e}"))?;
        return Ok(Some((pbs_nodefile(&text), format!("the PBS allocation ({file})"))));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_host_lists() {
        assert_eq!(slurm_nodelist("node1").expect("one"), ["node1"]);
        assert_eq!(slurm_nodelist("n[1-3]").expect("range"), ["n1", "n2", "n3"]);
        assert_eq!(
            slurm_nodelist("node[01-03,07],gpu5").expect("mixed"),
            ["node01", "node02", "node03", "node07", "gpu5"]
        );
        assert_eq!(slurm_nodelist("r[1-2]c[3-4]").expect("two brackets"), ["r1c3", "r1c4", "r2c3", "r2c4"]);
        assert_eq!(slurm_nodelist("a[8-10]").expect("width"), ["a8", "a9", "a10"]);
        for bad in ["n[1-3", "n]1", "n[3-1]", "n[a-b]", "", "a,,b"] {
            assert!(slurm_nodelist(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_tasks() {
        assert_eq!(slurm_tasks_per_node("2(x3),1").expect("form"), [2, 2, 2, 1]);
        assert_eq!(slurm_tasks_per_node("4").expect("one"), [4]);
        assert_eq!(slurm_tasks_per_node("1,2(x2)").expect("form"), [1, 2, 2]);
        for bad in ["x", "2(3)", "2(x3", "-1"] {
            assert!(slurm_tasks_per_node(bad).is_err(), "{bad}");
        }
    }

    /// Found by fuzzing (fuzz/regressions/allocation): lists whose expansion would not fit in
    /// memory are refused before anything is made.
    #[test]
    fn expansions_are_bounded() {
        let err = slurm_nodelist("a[1-99999][1-99999]").expect_err("10^10 hosts");
        assert!(err.contains("more than 100000 hosts"), "{err}");
        assert!(slurm_nodelist("a[1-60000],b[1-60000]").is_err(), "too many in all");
        assert_eq!(slurm_nodelist("a[1-99999]").expect("many").len(), 99_999);
        let wide = format!("n[{}1-2]", "0".repeat(300));
        assert!(slurm_nodelist(&wide).expect_err("width").contains("253 characters"));
        assert!(slurm_tasks_per_node("1(x100001)").is_err());
        assert!(slurm_tasks_per_node(&["1(x99999)"; 3].join(",")).is_err());
    }

    #[test]
    fn pbs_node_files() {
        let hosts = pbs_nodefile("n1\nn1\nn2\n\nn1\n");
        assert_eq!(
            hosts.iter().map(|h| (h.name.as_str(), h.slots)).collect::<Vec<_>>(),
            [("n1", 3), ("n2", 1)]
        );
    }
}
