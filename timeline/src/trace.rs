//! Reading a Chrome trace JSON file as prun writes it.
//!
//! Only complete events (`"ph": "X"`) are drawn; `thread_name` metadata events (`"ph": "M"`) make a rank's
//! row appear even when it recorded nothing. Every other phase, and any event that lacks a time or a rank,
//! is skipped and counted. Missing `args` fields are simply `None`.

use std::collections::BTreeSet;

use serde_json::Value;

/// What went wrong reading a trace's text (the caller adds the file name).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The top level is not an object with a `traceEvents` member.
    #[error("no \"traceEvents\" at the top level (expected {{\"traceEvents\": [...]}}, found {0})")]
    MissingTraceEvents(&'static str),
    /// `traceEvents` is there but is not an array.
    #[error("\"traceEvents\" is {0}, not an array")]
    TraceEventsNotArray(&'static str),
}

/// One drawable (complete, `"ph": "X"`) event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's `name`.
    pub name: String,
    /// The event's `cat`, empty when missing.
    pub cat: String,
    /// Start, microseconds (as in the file: wall clock since the epoch).
    pub ts: f64,
    /// Duration, microseconds (0 when missing or negative).
    pub dur: f64,
    /// The rank (`tid`).
    pub rank: u64,
    /// What the event is, with the `args` this tool understands.
    pub kind: Kind,
}

impl Event {
    /// Where the event ends, microseconds.
    pub fn end(&self) -> f64 {
        self.ts + self.dur
    }

    /// The map call this event belongs to, if it is a map event and says so.
    pub fn map_id(&self) -> Option<u64> {
        match &self.kind {
            Kind::Batch { map, .. } | Kind::Steal { map, .. } | Kind::Map { map, .. } => *map,
            Kind::Collective { .. } | Kind::Other => None,
        }
    }
}

/// The kinds of events prun writes; anything else is [`Kind::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A batch of items of a parallel map run by one rank.
    Batch {
        /// The map call.
        map: Option<u64>,
        /// The first item of the batch.
        first: Option<u64>,
        /// How many items.
        count: Option<u64>,
        /// How many items the whole map has.
        total: Option<u64>,
    },
    /// A rank (the thief, `tid`) took items from another rank's queue.
    Steal {
        /// The map call.
        map: Option<u64>,
        /// The rank stolen from.
        victim: Option<u64>,
        /// How many items it got.
        got: Option<u64>,
    },
    /// A collective operation (`"cat": "collective"`).
    Collective {
        /// The sequence number of the call.
        call: Option<u64>,
    },
    /// A whole parallel map call.
    Map {
        /// The map call.
        map: Option<u64>,
        /// How many items.
        total: Option<u64>,
        /// `"dynamic"` or `"static"`.
        balance: Option<String>,
    },
    /// Any other complete event: drawn generically.
    Other,
}

/// A parsed trace.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The drawable events, in file order.
    pub events: Vec<Event>,
    /// Every rank that appears, in events or in `thread_name` metadata.
    pub ranks: BTreeSet<u64>,
    /// How many entries of `traceEvents` were skipped (other phases, missing fields, not objects).
    pub skipped: usize,
}

impl Trace {
    /// The ids of the map calls that appear in the trace, ascending.
    pub fn map_ids(&self) -> BTreeSet<u64> {
        self.events.iter().filter_map(Event::map_id).collect()
    }

    /// Keeps only the events of map call `map` (its batches, steals and the map event itself).
    /// The rank rows stay, so ranks that did no work for that call still show.
    pub fn only_map(&self, map: u64) -> Trace {
        Trace {
            events: self.events.iter().filter(|e| e.map_id() == Some(map)).cloned().collect(),
            ranks: self.ranks.clone(),
            skipped: self.skipped,
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object without it",
    }
}

/// A non-negative integer from a JSON number (integral floats too) or a decimal string.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses the text of a Chrome trace file.
pub fn parse(text: &str) -> Result<Trace, ParseError> {
    let root: Value = serde_json::from_str(text)?;
    let events = match &root {
        Value::Object(obj) => match obj.get("traceEvents") {
            Some(Value::Array(events)) => events,
            Some(other) => return Err(ParseError::TraceEventsNotArray(type_name(other))),
            None => return Err(ParseError::MissingTraceEvents("an object without it")),
        },
        other => return Err(ParseError::MissingTraceEvents(type_name(other))),
    };
    let mut trace = Trace::default();
    for raw in events {
        match read_event(raw) {
            Read::Event(event) => {
                trace.ranks.insert(event.rank);
                trace.events.push(event);
            }
            Read::Rank(rank) => {
                trace.ranks.insert(rank);
            }
            Read::Skip => trace.skipped += 1,
        }
    }
    Ok(trace)
}

enum Read {
    Event(Event),
    Rank(u64),
    Skip,
}

fn read_event(raw: &Value) -> Read {
    let Some(obj) = raw.as_object() else { return Read::Skip };
    let str_of = |key: &str| obj.get(key).and_then(Value::as_str);
    let Some(rank) = obj.get("tid").and_then(as_u64) else { return Read::Skip };
    match str_of("ph") {
        Some("M") if str_of("name") == Some("thread_name") => return Read::Rank(rank),
        Some("X") => {}
        _ => return Read::Skip,
    }
    let Some(ts) = obj.get("ts").and_then(Value::as_f64).filter(|t| t.is_finite()) else { return Read::Skip };
    let dur = obj.get("dur").and_then(Value::as_f64).filter(|d| d.is_finite() && *d > 0.0).unwrap_or(0.0);
    let name = str_of("name").unwrap_or("").to_string();
    let cat = str_of("cat").unwrap_or("").to_string();
    let args = obj.get("args").and_then(Value::as_object);
    let arg = |key: &str| args.and_then(|a| a.get(key)).and_then(as_u64);
    let kind = match (name.as_str(), cat.as_str()) {
        ("batch", _) => {
            Kind::Batch { map: arg("map"), first: arg("first"), count: arg("count"), total: arg("total") }
        }
        ("steal", _) => Kind::Steal { map: arg("map"), victim: arg("victim"), got: arg("got") },
        ("map", "map" | "") => Kind::Map {
            map: arg("map"),
            total: arg("total"),
            balance: args.and_then(|a| a.get("balance")).and_then(Value::as_str).map(str::to_string),
        },
        (_, "collective") => Kind::Collective { call: arg("call") },
        _ => Kind::Other,
    };
    Read::Event(Event { name, cat, ts, dur, rank, kind })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The example from the design notes, with concrete times.
    pub(crate) const EXAMPLE: &str = r#"{"traceEvents": [
      {"name": "thread_name", "ph": "M", "pid": 0, "tid": 3, "args": {"name": "rank 3"}},
      {"name": "batch", "cat": "map", "ph": "X", "ts": 1732550000123.5, "dur": 48.2, "pid": 0, "tid": 3,
       "args": {"map": 2, "first": 1200, "count": 37, "total": 5000}},
      {"name": "steal", "cat": "map", "ph": "X", "ts": 1732550000180.0, "dur": 3.5, "pid": 0, "tid": 1,
       "args": {"map": 2, "victim": 0, "got": 812}},
      {"name": "allreduce", "cat": "collective", "ph": "X", "ts": 1732550000200.0, "dur": 12.0, "pid": 0,
       "tid": 0, "args": {"call": 7}},
      {"name": "map", "cat": "map", "ph": "X", "ts": 1732550000100.0, "dur": 150.0, "pid": 0, "tid": 0,
       "args": {"map": 2, "total": 5000, "balance": "dynamic"}}
    ], "displayTimeUnit": "ms"}"#;

    #[test]
    fn parses_the_example() -> Result<(), ParseError> {
        let t = parse(EXAMPLE)?;
        assert_eq!(t.events.len(), 4);
        assert_eq!(t.ranks.iter().copied().collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(t.skipped, 0);
        let b = &t.events[0];
        assert_eq!((b.rank, b.ts, b.dur), (3, 1732550000123.5, 48.2));
        assert_eq!(
            b.kind,
            Kind::Batch { map: Some(2), first: Some(1200), count: Some(37), total: Some(5000) }
        );
        assert_eq!(t.events[1].kind, Kind::Steal { map: Some(2), victim: Some(0), got: Some(812) });
        assert_eq!(t.events[2].kind, Kind::Collective { call: Some(7) });
        assert_eq!(t.events[2].name, "allreduce");
        assert_eq!(
            t.events[3].kind,
            Kind::Map { map: Some(2), total: Some(5000), balance: Some("dynamic".to_string()) }
        );
        assert_eq!(t.map_ids().into_iter().collect::<Vec<_>>(), vec![2]);
        Ok(())
    }

    #[test]
    fn tolerates_unknown_events_and_missing_fields() -> Result<(), ParseError> {
        let t = parse(
            r#"{"traceEvents": [
              {"name": "compile", "cat": "jit", "ph": "X", "ts": 10, "dur": 5, "tid": 2},
              {"name": "batch", "ph": "X", "ts": 20, "tid": 1},
              {"name": "steal", "ph": "X", "ts": 21, "dur": -3, "tid": "4", "args": {"map": "x"}},
              {"name": "counter", "ph": "C", "ts": 30, "tid": 0, "args": {"v": 1}},
              {"name": "begin", "ph": "B", "ts": 30, "tid": 0},
              {"name": "no time", "ph": "X", "tid": 0},
              {"name": "no rank", "ph": "X", "ts": 5},
              {"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "prun"}},
              42, "junk", null
            ], "otherData": {"x": 1}}"#,
        )?;
        assert_eq!(t.events.len(), 3);
        assert_eq!(t.events[0].kind, Kind::Other);
        assert_eq!(t.events[1].kind, Kind::Batch { map: None, first: None, count: None, total: None });
        assert_eq!(t.events[1].dur, 0.0);
        assert_eq!(t.events[2].kind, Kind::Steal { map: None, victim: None, got: None });
        assert_eq!((t.events[2].rank, t.events[2].dur), (4, 0.0));
        assert_eq!(t.skipped, 8);
        assert!(t.map_ids().is_empty());
        Ok(())
    }

    #[test]
    fn errors_for_bad_json_and_missing_trace_events() {
        let e = parse("{\"traceEvents\": [").map(|_| ()).err();
        assert!(matches!(e, Some(ParseError::Json(_))), "{e:?}");
        assert!(e.map(|e| e.to_string()).unwrap_or_default().starts_with("not valid JSON"));
        let e = parse(r#"{"events": []}"#).map(|_| ()).err();
        assert!(matches!(e, Some(ParseError::MissingTraceEvents(_))), "{e:?}");
        assert!(e.map(|e| e.to_string()).unwrap_or_default().contains("no \"traceEvents\""));
        let e = parse("[1, 2]").map(|_| ()).err();
        assert!(matches!(e, Some(ParseError::MissingTraceEvents("an array"))), "{e:?}");
        let e = parse(r#"{"traceEvents": {}}"#).map(|_| ()).err();
        assert!(matches!(e, Some(ParseError::TraceEventsNotArray(_))), "{e:?}");
    }

    #[test]
    fn only_map_keeps_that_call_and_all_rows() -> Result<(), ParseError> {
        let t = parse(EXAMPLE)?.only_map(2);
        assert_eq!(t.events.len(), 3);
        assert!(t.events.iter().all(|e| e.map_id() == Some(2)));
        assert_eq!(t.ranks.len(), 3);
        assert!(parse(EXAMPLE)?.only_map(9).events.is_empty());
        Ok(())
    }
}
