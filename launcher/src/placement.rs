//! Mapping ranks to hosts.
//!
//! [`place`] assigns `np` ranks to the hosts of a hostfile or `--host` list, by slot (fill each
//! host, then the next) or by node (round robin), with Open MPI's rules for oversubscription:
//! more ranks than slots need `--oversubscribe`, and no host ever takes more than its
//! `max_slots`.

use std::collections::HashMap;

use crate::hostfile::HostSpec;

/// How many hosts an error message lists before it cuts the list short.
const HOSTS_SHOWN: usize = 8;

/// Where one rank runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Global rank, `0..np`.
    pub rank: usize,
    /// Host name as in the [`HostSpec`] (may include `user@`).
    pub host: String,
    /// Index of this rank among the ranks on the same host, in rank order.
    pub local_rank: usize,
    /// Number of ranks on this host.
    pub local_size: usize,
    /// Index of the host among the hosts that received at least one rank, in host-list order.
    pub node_rank: usize,
}

/// Mapping policy, as `--map-by slot` / `--map-by node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapBy {
    /// Fill each host's slots in order, then go to the next host.
    #[default]
    Slot,
    /// Round robin: one rank per host in turn, skipping hosts whose slots are full.
    Node,
}

/// Why ranks could not be placed. Each message says what was asked and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// `np` was 0.
    #[error("-n must be at least 1; ask for one or more ranks, e.g. -n 4")]
    NoRanks,
    /// The host list was empty.
    #[error("{origin} lists no hosts; give at least one host, e.g. --host localhost:4")]
    NoHosts {
        /// Where the hosts came from (the `source` argument of [`place`]).
        origin: String,
    },
    /// More ranks than slots, without `--oversubscribe`.
    #[error(
        "{} requested but {origin} has only {} ({hosts}); use -n {available} or fewer, \
         add slots to the hosts, or pass --oversubscribe",
        count_of(.requested, "rank"),
        count_of(.available, "slot")
    )]
    NotEnoughSlots {
        /// Ranks asked for (`-n`).
        requested: usize,
        /// Total slots over all hosts.
        available: usize,
        /// Where the hosts came from (the `source` argument of [`place`]).
        origin: String,
        /// Slots per host, e.g. `localhost: 3, node2: 1`.
        hosts: String,
    },
    /// More ranks than the hosts' `max_slots` allow, even with `--oversubscribe`.
    #[error(
        "{} requested but the max_slots of {origin} allow at most {limit} even with \
         --oversubscribe (max_slots: {hosts}); use -n {limit} or fewer, raise max_slots, or add hosts",
        count_of(.requested, "rank")
    )]
    MaxSlotsExceeded {
        /// Ranks asked for (`-n`).
        requested: usize,
        /// Most ranks the hosts take: the sum of each host's `max_slots` (or slots, if larger).
        limit: usize,
        /// Where the hosts came from (the `source` argument of [`place`]).
        origin: String,
        /// Rank limit per host, e.g. `node1: 4, node2: 2`.
        hosts: String,
    },
}

fn count_of(n: &usize, noun: &str) -> String {
    if *n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Sum of the slots of all hosts (saturating).
pub fn total_slots(hosts: &[HostSpec]) -> usize {
    hosts.iter().fold(0usize, |acc, h| acc.saturating_add(h.slots))
}

/// Most ranks a host may take with `--oversubscribe`; `None` is unlimited.
fn rank_limit(h: &HostSpec) -> Option<usize> {
    h.max_slots.map(|m| m.max(h.slots))
}

/// `name: n, ...` over the hosts, cut short after [`HOSTS_SHOWN`] hosts.
fn summary(hosts: &[HostSpec], value: impl Fn(&HostSpec) -> String) -> String {
    let mut parts: Vec<String> =
        hosts.iter().take(HOSTS_SHOWN).map(|h| format!("{}: {}", h.name, value(h))).collect();
    if hosts.len() > HOSTS_SHOWN {
        parts.push(format!("and {} more", hosts.len() - HOSTS_SHOWN));
    }
    parts.join(", ")
}

/// Places `np` ranks on `hosts`.
///
/// `source` names where the hosts came from (e.g. "hostfile hosts.txt" or "--host"), for messages.
///
/// * [`MapBy::Slot`] fills each host's slots in order, then the next host; [`MapBy::Node`] goes
///   round robin, one rank per host in turn, skipping full hosts. Ranks are numbered in the
///   order they are assigned.
/// * More ranks than [`total_slots`] is an error unless `oversubscribe`; then the extra ranks
///   go round robin over the hosts still below their `max_slots` (none = unlimited), and it is
///   an error if the `max_slots` limits leave no room.
///
/// The result is sorted by rank, `0..np`.
pub fn place(
    hosts: &[HostSpec],
    np: usize,
    map_by: MapBy,
    oversubscribe: bool,
    source: &str,
) -> Result<Vec<Placement>, PlacementError> {
    if np == 0 {
        return Err(PlacementError::NoRanks);
    }
    if hosts.is_empty() {
        return Err(PlacementError::NoHosts { origin: source.to_string() });
    }
    let available = total_slots(hosts);
    if np > available {
        if !oversubscribe {
            return Err(PlacementError::NotEnoughSlots {
                requested: np,
                available,
                origin: source.to_string(),
                hosts: summary(hosts, |h| h.slots.to_string()),
            });
        }
        let limit: Option<usize> =
            hosts.iter().try_fold(0usize, |acc, h| rank_limit(h).map(|l| acc.saturating_add(l)));
        if let Some(limit) = limit
            && np > limit
        {
            return Err(max_slots_error(hosts, np, limit, source));
        }
    }

    // Host index of each rank, in rank order.
    let mut assigned: Vec<usize> = Vec::with_capacity(np);
    let mut counts = vec![0usize; hosts.len()];
    match map_by {
        MapBy::Slot => {
            for (i, h) in hosts.iter().enumerate() {
                let take = h.slots.min(np - assigned.len());
                assigned.extend(std::iter::repeat_n(i, take));
                counts[i] += take;
            }
        }
        MapBy::Node => {
            let mut active: Vec<usize> = (0..hosts.len()).filter(|&i| hosts[i].slots > 0).collect();
            while assigned.len() < np && !active.is_empty() {
                for &i in &active {
                    if assigned.len() == np {
                        break;
                    }
                    assigned.push(i);
                    counts[i] += 1;
                }
                active.retain(|&i| counts[i] < hosts[i].slots);
            }
        }
    }

    // Oversubscription: round robin over the hosts below their max_slots.
    let mut active: Vec<usize> =
        (0..hosts.len()).filter(|&i| rank_limit(&hosts[i]).is_none_or(|l| counts[i] < l)).collect();
    while assigned.len() < np {
        if active.is_empty() {
            let limit = hosts.iter().filter_map(rank_limit).fold(0usize, usize::saturating_add);
            return Err(max_slots_error(hosts, np, limit, source));
        }
        for &i in &active {
            if assigned.len() == np {
                break;
            }
            assigned.push(i);
            counts[i] += 1;
        }
        active.retain(|&i| rank_limit(&hosts[i]).is_none_or(|l| counts[i] < l));
    }

    // Group by host name (a name listed twice is one host), in first-appearance order.
    let mut group_of_name: HashMap<&str, usize> = HashMap::new();
    let group: Vec<usize> = hosts
        .iter()
        .map(|h| {
            let next = group_of_name.len();
            *group_of_name.entry(h.name.as_str()).or_insert(next)
        })
        .collect();
    let groups = group_of_name.len();
    let mut local_size = vec![0usize; groups];
    for &i in &assigned {
        local_size[group[i]] += 1;
    }
    let mut node_rank = vec![0usize; groups];
    let mut next_node = 0;
    for (g, slot) in node_rank.iter_mut().enumerate() {
        if local_size[g] > 0 {
            *slot = next_node;
            next_node += 1;
        }
    }
    let mut next_local = vec![0usize; groups];
    let placements = assigned
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let g = group[i];
            let local_rank = next_local[g];
            next_local[g] += 1;
            Placement {
                rank,
                host: hosts[i].name.clone(),
                local_rank,
                local_size: local_size[g],
                node_rank: node_rank[g],
            }
        })
        .collect();
    Ok(placements)
}

fn max_slots_error(hosts: &[HostSpec], np: usize, limit: usize, source: &str) -> PlacementError {
    PlacementError::MaxSlotsExceeded {
        requested: np,
        limit,
        origin: source.to_string(),
        hosts: summary(hosts, |h| rank_limit(h).map_or_else(|| "unlimited".to_string(), |l| l.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(name: &str, slots: usize) -> HostSpec {
        HostSpec { name: name.to_string(), slots, max_slots: None }
    }

    fn hm(name: &str, slots: usize, max: usize) -> HostSpec {
        HostSpec { name: name.to_string(), slots, max_slots: Some(max) }
    }

    fn ok(hosts: &[HostSpec], np: usize, map_by: MapBy, over: bool) -> Vec<Placement> {
        match place(hosts, np, map_by, over, "--host") {
            Ok(v) => {
                assert_eq!(v.len(), np);
                for (i, p) in v.iter().enumerate() {
                    assert_eq!(p.rank, i, "sorted by rank, numbered 0..np");
                }
                v
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn host_names(v: &[Placement]) -> Vec<&str> {
        v.iter().map(|p| p.host.as_str()).collect()
    }

    /// (host, local_rank, local_size, node_rank) per rank.
    fn table(v: &[Placement]) -> Vec<(&str, usize, usize, usize)> {
        v.iter().map(|p| (p.host.as_str(), p.local_rank, p.local_size, p.node_rank)).collect()
    }

    #[test]
    fn default_is_slot() {
        assert_eq!(MapBy::default(), MapBy::Slot);
    }

    #[test]
    fn by_slot_fills_hosts_in_order() {
        let v = ok(&[h("a", 2), h("b", 3)], 5, MapBy::Slot, false);
        assert_eq!(
            table(&v),
            vec![("a", 0, 2, 0), ("a", 1, 2, 0), ("b", 0, 3, 1), ("b", 1, 3, 1), ("b", 2, 3, 1)]
        );
    }

    #[test]
    fn by_slot_partial_last_host_and_unused_hosts() {
        let v = ok(&[h("a", 2), h("b", 3), h("c", 4)], 3, MapBy::Slot, false);
        assert_eq!(table(&v), vec![("a", 0, 2, 0), ("a", 1, 2, 0), ("b", 0, 1, 1)]);
        let v = ok(&[h("a", 4), h("b", 4)], 2, MapBy::Slot, false);
        assert_eq!(table(&v), vec![("a", 0, 2, 0), ("a", 1, 2, 0)]);
    }

    #[test]
    fn by_node_round_robin_with_uneven_slots() {
        let v = ok(&[h("a", 1), h("b", 3), h("c", 2)], 6, MapBy::Node, false);
        assert_eq!(
            table(&v),
            vec![
                ("a", 0, 1, 0),
                ("b", 0, 3, 1),
                ("c", 0, 2, 2),
                ("b", 1, 3, 1),
                ("c", 1, 2, 2),
                ("b", 2, 3, 1),
            ]
        );
    }

    #[test]
    fn by_node_fewer_ranks_than_hosts() {
        let v = ok(&[h("a", 4), h("b", 4), h("c", 4)], 2, MapBy::Node, false);
        assert_eq!(table(&v), vec![("a", 0, 1, 0), ("b", 0, 1, 1)]);
    }

    #[test]
    fn by_node_stops_mid_pass() {
        let v = ok(&[h("a", 3), h("b", 3), h("c", 3)], 5, MapBy::Node, false);
        assert_eq!(host_names(&v), vec!["a", "b", "c", "a", "b"]);
        assert_eq!(v[3].local_rank, 1);
        assert_eq!(v[2].local_size, 1);
    }

    #[test]
    fn node_rank_skips_hosts_without_ranks() {
        let hosts = [h("a", 0), h("b", 1), h("c", 1)];
        let v = ok(&hosts, 2, MapBy::Slot, false);
        assert_eq!(table(&v), vec![("b", 0, 1, 0), ("c", 0, 1, 1)]);
        let v = ok(&hosts, 2, MapBy::Node, false);
        assert_eq!(table(&v), vec![("b", 0, 1, 0), ("c", 0, 1, 1)]);
    }

    #[test]
    fn same_name_listed_twice_is_one_host() {
        let v = ok(&[h("a", 1), h("b", 1), h("a", 1)], 3, MapBy::Slot, false);
        assert_eq!(table(&v), vec![("a", 0, 2, 0), ("b", 0, 1, 1), ("a", 1, 2, 0)]);
    }

    #[test]
    fn exactly_all_slots_needs_no_oversubscribe() {
        let v = ok(&[hm("a", 2, 2), h("b", 1)], 3, MapBy::Slot, false);
        assert_eq!(host_names(&v), vec!["a", "a", "b"]);
    }

    #[test]
    fn too_many_ranks_without_oversubscribe() {
        let hosts = [h("localhost", 3), h("node2", 1)];
        for map_by in [MapBy::Slot, MapBy::Node] {
            let e = place(&hosts, 8, map_by, false, "hostfile hosts.txt").unwrap_err();
            assert_eq!(
                e.to_string(),
                "8 ranks requested but hostfile hosts.txt has only 4 slots (localhost: 3, node2: 1); \
                 use -n 4 or fewer, add slots to the hosts, or pass --oversubscribe"
            );
            assert_eq!(
                e,
                PlacementError::NotEnoughSlots {
                    requested: 8,
                    available: 4,
                    origin: "hostfile hosts.txt".into(),
                    hosts: "localhost: 3, node2: 1".into(),
                }
            );
        }
        let e = place(&hosts, 5, MapBy::Slot, false, "x").unwrap_err();
        assert!(e.to_string().starts_with("5 ranks requested"), "{e}");
    }

    #[test]
    fn too_many_ranks_singular_wording() {
        let e = place(&[h("a", 1)], 2, MapBy::Slot, false, "--host").unwrap_err();
        assert_eq!(
            e.to_string(),
            "2 ranks requested but --host has only 1 slot (a: 1); use -n 1 or fewer, add slots to the \
             hosts, or pass --oversubscribe"
        );
    }

    #[test]
    fn long_host_lists_are_cut_short_in_messages() {
        let hosts: Vec<HostSpec> = (0..12).map(|i| h(&format!("n{i}"), 1)).collect();
        let e = place(&hosts, 20, MapBy::Slot, false, "--host").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("(n0: 1, n1: 1, n2: 1, n3: 1, n4: 1, n5: 1, n6: 1, n7: 1, and 4 more)"), "{s}");
        assert!(!s.contains("n8"), "{s}");
    }

    #[test]
    fn oversubscribe_by_slot_round_robins_extras() {
        let v = ok(&[h("a", 2), h("b", 1)], 6, MapBy::Slot, true);
        assert_eq!(
            table(&v),
            vec![
                ("a", 0, 4, 0),
                ("a", 1, 4, 0),
                ("b", 0, 2, 1),
                ("a", 2, 4, 0),
                ("b", 1, 2, 1),
                ("a", 3, 4, 0),
            ]
        );
    }

    #[test]
    fn oversubscribe_by_node() {
        let v = ok(&[h("a", 2), h("b", 1)], 5, MapBy::Node, true);
        assert_eq!(host_names(&v), vec!["a", "b", "a", "a", "b"]);
        assert_eq!(v[4].local_rank, 1);
        assert_eq!(v[0].local_size, 3);
    }

    #[test]
    fn oversubscribe_respects_max_slots() {
        let v = ok(&[hm("a", 1, 2), h("b", 1)], 5, MapBy::Slot, true);
        assert_eq!(host_names(&v), vec!["a", "b", "a", "b", "b"]);
        let v = ok(&[hm("a", 1, 1), h("b", 1), hm("c", 1, 3)], 7, MapBy::Node, true);
        assert_eq!(host_names(&v), vec!["a", "b", "c", "b", "c", "b", "c"]);
        assert_eq!(v.iter().filter(|p| p.host == "c").count(), 3);
    }

    #[test]
    fn every_host_at_max_slots_is_an_error_even_with_oversubscribe() {
        let hosts = [hm("a", 1, 2), hm("b", 2, 2)];
        assert_eq!(host_names(&ok(&hosts, 4, MapBy::Slot, true)), vec!["a", "b", "b", "a"]);
        let e = place(&hosts, 5, MapBy::Slot, true, "hostfile h").unwrap_err();
        assert_eq!(
            e,
            PlacementError::MaxSlotsExceeded {
                requested: 5,
                limit: 4,
                origin: "hostfile h".into(),
                hosts: "a: 2, b: 2".into(),
            }
        );
        assert_eq!(
            e.to_string(),
            "5 ranks requested but the max_slots of hostfile h allow at most 4 even with --oversubscribe \
             (max_slots: a: 2, b: 2); use -n 4 or fewer, raise max_slots, or add hosts"
        );
        // Without --oversubscribe the slot shortage is reported first.
        let e = place(&hosts, 5, MapBy::Slot, false, "hostfile h").unwrap_err();
        assert!(matches!(e, PlacementError::NotEnoughSlots { available: 3, .. }), "{e}");
    }

    #[test]
    fn one_unlimited_host_absorbs_all_extras() {
        let v = ok(&[hm("a", 1, 1), h("b", 1)], 50, MapBy::Node, true);
        assert_eq!(v.iter().filter(|p| p.host == "b").count(), 49);
        assert_eq!(v[49].local_rank, 48);
    }

    #[test]
    fn max_slots_below_slots_takes_no_extras() {
        let v = ok(&[hm("a", 3, 1), h("b", 1)], 6, MapBy::Slot, true);
        assert_eq!(host_names(&v), vec!["a", "a", "a", "b", "b", "b"]);
    }

    #[test]
    fn zero_ranks_is_an_error() {
        let e = place(&[h("a", 1)], 0, MapBy::Slot, true, "--host").unwrap_err();
        assert_eq!(e, PlacementError::NoRanks);
        assert!(e.to_string().starts_with("-n must be at least 1"), "{e}");
    }

    #[test]
    fn no_hosts_is_an_error() {
        let e = place(&[], 1, MapBy::Node, true, "hostfile empty.txt").unwrap_err();
        assert_eq!(e, PlacementError::NoHosts { origin: "hostfile empty.txt".into() });
        assert!(e.to_string().starts_with("hostfile empty.txt lists no hosts"), "{e}");
    }

    #[test]
    fn total_slots_sums() {
        assert_eq!(total_slots(&[]), 0);
        assert_eq!(total_slots(&[h("a", 2), hm("b", 3, 9)]), 5);
        assert_eq!(total_slots(&[h("a", usize::MAX), h("b", 1)]), usize::MAX);
    }

    #[test]
    fn works_with_parsed_hostfile() {
        let hosts = crate::hostfile::parse_hostfile_text("h", "a slots=2\nb:1\na\n").unwrap();
        let v = ok(&hosts, 4, MapBy::Slot, false);
        assert_eq!(table(&v), vec![("a", 0, 3, 0), ("a", 1, 3, 0), ("a", 2, 3, 0), ("b", 0, 1, 1)]);
    }
}
