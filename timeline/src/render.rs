//! Drawing a [`Trace`] as an SVG timeline: one row per rank, time across.
//!
//! Batches are coloured by the position of their items in the map (`first / total`), so a static run
//! shows one band of colour per rank and a dynamic run mixes colours where ranks stole work. Back-to-back
//! batches of one rank whose colours are close are drawn as one rectangle, which keeps traces of many
//! thousands of batches small and fast to display.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write};

use crate::trace::{Event, Kind, Trace};

/// Hues used for item positions 0..1: red through violet (not all the way round, so both ends differ).
const HUE_RANGE: f64 = 280.0;
/// Batches whose item positions (0..1) differ by at most this much may share one rectangle.
const HUE_TOLERANCE: f64 = 0.02;
/// Space left of the rows, for the rank labels.
const LEFT: f64 = 90.0;
/// Space right of the rows.
const RIGHT: f64 = 24.0;
/// Where the first row starts.
const TOP: f64 = 84.0;
/// Colour of batches that do not say where their items are.
const NEUTRAL: &str = "#8a9bb0";

/// How to draw.
#[derive(Debug, Clone)]
pub struct Options {
    /// Width of the picture, pixels.
    pub width: u32,
    /// Shown in the title line (the trace's file name).
    pub title: String,
    /// The map call the trace was restricted to, for the title.
    pub map: Option<u64>,
}

/// An SVG document and what went into it.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The document.
    pub svg: String,
    /// How many batch events the trace had.
    pub batches: usize,
    /// How many rectangles they were drawn as.
    pub batch_rects: usize,
}

/// A number written with at most one decimal, without a trailing `.0`.
struct N(f64);

impl Display for N {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = (self.0 * 10.0).round() / 10.0;
        if r == r.trunc() { write!(f, "{}", r as i64) } else { write!(f, "{r:.1}") }
    }
}

/// Text made safe for SVG content and attribute values.
struct Esc<'a>(&'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                c if (c as u32) < 0x20 && c != '\n' && c != '\t' => f.write_char(' ')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A duration in microseconds, in the unit that suits it.
pub fn fmt_dur(us: f64) -> String {
    if us.abs() < 1_000.0 {
        format!("{us:.1} µs")
    } else if us.abs() < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.3} s", us / 1e6)
    }
}

/// The position (0..1) of a batch's first item in its map, if the batch says.
fn position(first: Option<u64>, total: Option<u64>) -> Option<f64> {
    match (first, total) {
        (Some(first), Some(total)) if total > 0 => Some((first as f64 / total as f64).clamp(0.0, 1.0)),
        _ => None,
    }
}

fn fill(position: Option<f64>) -> String {
    match position {
        Some(p) => format!("hsl({},70%,55%)", N(p * HUE_RANGE)),
        None => NEUTRAL.to_string(),
    }
}

/// One or more back-to-back batches of one rank, drawn as one rectangle.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRun {
    /// Start, microseconds.
    pub start: f64,
    /// End, microseconds.
    pub end: f64,
    /// How many batches.
    pub batches: usize,
    /// Time spent in the batches themselves, microseconds.
    pub busy: f64,
    /// The map call.
    pub map: Option<u64>,
    /// Lowest and highest item (inclusive), when the batches say.
    pub items: Option<(u64, u64)>,
    /// How many items the batches ran.
    pub count: u64,
    /// How many items the map has.
    pub total: Option<u64>,
    /// Lowest and highest position of the batches (see [`position`]).
    pos_range: Option<(f64, f64)>,
    /// Sum of position × weight, and the weights (items per batch).
    pos_sum: f64,
    weight: f64,
}

impl BatchRun {
    fn new(e: &Event) -> Option<BatchRun> {
        let Kind::Batch { map, first, count, total } = e.kind else { return None };
        let pos = position(first, total);
        let w = count.unwrap_or(1).max(1) as f64;
        Some(BatchRun {
            start: e.ts,
            end: e.end(),
            batches: 1,
            busy: e.dur,
            map,
            items: first.map(|f| (f, f + count.unwrap_or(1).max(1) - 1)),
            count: count.unwrap_or(0),
            total,
            pos_range: pos.map(|p| (p, p)),
            pos_sum: pos.unwrap_or(0.0) * w,
            weight: w,
        })
    }

    /// Takes `next` in if it starts less than `gap` after this run ends, belongs to the same map and
    /// its colour is close; says whether it did.
    fn absorb(&mut self, next: &BatchRun, gap: f64) -> bool {
        if next.start - self.end >= gap || next.map != self.map || next.total != self.total {
            return false;
        }
        let range = match (self.pos_range, next.pos_range) {
            (None, None) => None,
            (Some((lo, hi)), Some((nlo, nhi))) => {
                let r = (lo.min(nlo), hi.max(nhi));
                if r.1 - r.0 > HUE_TOLERANCE {
                    return false;
                }
                Some(r)
            }
            _ => return false,
        };
        self.pos_range = range;
        self.end = self.end.max(next.end);
        self.batches += next.batches;
        self.busy += next.busy;
        self.items = match (self.items, next.items) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (a, b) => a.or(b),
        };
        self.count += next.count;
        self.pos_sum += next.pos_sum;
        self.weight += next.weight;
        true
    }

    /// The colour position of the whole run: the item-weighted mean of its batches'.
    pub fn position(&self) -> Option<f64> {
        self.pos_range.map(|_| self.pos_sum / self.weight)
    }
}

/// Merges one rank's batches (in any order) into runs: back to back (the next starts less than `gap`
/// microseconds after the run ends, or overlaps it), same map, colours within [`HUE_TOLERANCE`].
pub fn merge_batches(batches: &[&Event], gap: f64) -> Vec<BatchRun> {
    let mut runs: Vec<BatchRun> = batches.iter().filter_map(|e| BatchRun::new(e)).collect();
    runs.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut merged: Vec<BatchRun> = Vec::with_capacity(runs.len() / 4 + 1);
    for run in runs {
        if !merged.last_mut().is_some_and(|last| last.absorb(&run, gap)) {
            merged.push(run);
        }
    }
    merged
}

/// Back-to-back events of one rank with the same name (collectives and unknown events), drawn as one.
#[derive(Debug, Clone)]
struct SimpleRun<'a> {
    name: &'a str,
    cat: &'a str,
    start: f64,
    end: f64,
    events: usize,
    busy: f64,
    calls: Option<(u64, u64)>,
}

fn merge_simple<'a>(events: &[&'a Event], gap: f64) -> Vec<SimpleRun<'a>> {
    let mut sorted = events.to_vec();
    sorted.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    let mut runs: Vec<SimpleRun<'a>> = Vec::new();
    for e in sorted {
        let call = match e.kind {
            Kind::Collective { call } => call,
            _ => None,
        };
        let joins = |last: &SimpleRun<'_>| last.name == e.name && last.cat == e.cat && e.ts - last.end < gap;
        if let Some(last) = runs.last_mut().filter(|last| joins(last)) {
            last.end = last.end.max(e.end());
            last.events += 1;
            last.busy += e.dur;
            last.calls = match (last.calls, call) {
                (Some((a, b)), Some(c)) => Some((a.min(c), b.max(c))),
                (a, c) => a.or(c.map(|c| (c, c))),
            };
            continue;
        }
        runs.push(SimpleRun {
            name: &e.name,
            cat: &e.cat,
            start: e.ts,
            end: e.end(),
            events: 1,
            busy: e.dur,
            calls: call.map(|c| (c, c)),
        });
    }
    runs
}

/// A map call: the span of its `map` events (one per rank, or one in all).
#[derive(Debug, Clone)]
struct MapBand {
    map: Option<u64>,
    start: f64,
    end: f64,
    total: Option<u64>,
    balance: Option<String>,
}

impl MapBand {
    fn label(&self) -> String {
        let mut s = match self.map {
            Some(k) => format!("map {k}"),
            None => "map".to_string(),
        };
        if let Some(b) = &self.balance {
            let _ = write!(s, " ({b})");
        }
        s
    }
}

fn map_bands(events: &[Event]) -> Vec<MapBand> {
    let mut by_id: BTreeMap<u64, MapBand> = BTreeMap::new();
    let mut anonymous = Vec::new();
    for e in events {
        let Kind::Map { map, total, balance } = &e.kind else { continue };
        let band = MapBand { map: *map, start: e.ts, end: e.end(), total: *total, balance: balance.clone() };
        match map {
            Some(k) => {
                let b = by_id.entry(*k).or_insert_with(|| band.clone());
                b.start = b.start.min(band.start);
                b.end = b.end.max(band.end);
                b.total = b.total.or(band.total);
                b.balance = b.balance.take().or(band.balance);
            }
            None => anonymous.push(band),
        }
    }
    let mut bands: Vec<MapBand> = by_id.into_values().chain(anonymous).collect();
    bands.sort_by(|a, b| a.start.total_cmp(&b.start));
    bands
}

/// Tick step ("nice": 1, 2 or 5 × 10^k) for a span, about `target` ticks.
fn tick_step(span: f64, target: f64) -> f64 {
    let raw = span / target.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// One rank's events, by kind.
#[derive(Debug, Clone, Default)]
struct RankEvents<'a> {
    batches: Vec<&'a Event>,
    steals: Vec<&'a Event>,
    collectives: Vec<&'a Event>,
    others: Vec<&'a Event>,
}

/// The picture's geometry.
struct Layout {
    t0: f64,
    px_per_us: f64,
    row_h: f64,
}

impl Layout {
    fn x(&self, t: f64) -> f64 {
        LEFT + (t - self.t0) * self.px_per_us
    }

    fn row_y(&self, row: usize) -> f64 {
        TOP + row as f64 * self.row_h
    }
}

/// Draws the trace.
pub fn render(trace: &Trace, opts: &Options) -> Rendered {
    let mut out = String::with_capacity(4096 + trace.events.len() * 64);
    let (batches, batch_rects) = render_into(&mut out, trace, opts).unwrap_or_default();
    Rendered { svg: out, batches, batch_rects }
}

fn render_into(out: &mut String, trace: &Trace, opts: &Options) -> Result<(usize, usize), fmt::Error> {
    let width = f64::from(opts.width.max(200));
    let plot_w = width - LEFT - RIGHT;
    let ranks: Vec<u64> = trace.ranks.iter().copied().collect();
    let row_of: BTreeMap<u64, usize> = ranks.iter().enumerate().map(|(i, r)| (*r, i)).collect();
    let rows = ranks.len().max(1);
    let row_h = (480.0 / rows as f64).clamp(8.0, 36.0);
    let rows_bottom = TOP + rows as f64 * row_h;

    let t0 = trace.events.iter().map(|e| e.ts).fold(f64::INFINITY, f64::min);
    let t1 = trace.events.iter().map(Event::end).fold(f64::NEG_INFINITY, f64::max);
    let (t0, span) = if t0.is_finite() && t1.is_finite() { (t0, t1 - t0) } else { (0.0, 0.0) };
    // A trace whose events are all instants still needs a scale.
    let span = if span > 0.0 { span } else { 1.0 };
    let lay = Layout { t0, px_per_us: plot_w / span, row_h };
    let gap = 1.0 / lay.px_per_us;

    // Per-rank events.
    let mut per_rank: Vec<RankEvents<'_>> = vec![RankEvents::default(); rows];
    for e in &trace.events {
        let Some(&row) = row_of.get(&e.rank) else { continue };
        let slot = &mut per_rank[row];
        match e.kind {
            Kind::Batch { .. } => slot.batches.push(e),
            Kind::Steal { .. } => slot.steals.push(e),
            Kind::Collective { .. } => slot.collectives.push(e),
            Kind::Other => slot.others.push(e),
            Kind::Map { .. } => {}
        }
    }
    let batch_count: usize = per_rank.iter().map(|s| s.batches.len()).sum();
    let steal_count: usize = per_rank.iter().map(|s| s.steals.len()).sum();
    let totals: Vec<u64> = {
        let mut t: Vec<u64> = trace
            .events
            .iter()
            .filter_map(|e| match e.kind {
                Kind::Batch { total, .. } | Kind::Map { total, .. } => total,
                _ => None,
            })
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    };

    let height = rows_bottom + 58.0;
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif" font-size="12">"#,
        w = N(width),
        h = N(height)
    )?;
    writeln!(
        out,
        "<style>.b,.c,.o{{stroke:none}} .s{{fill:#111}} .c{{fill:#9a9a9a}} .o{{fill:#b7c4d4}} \
         .l{{fill:#333}} .g{{stroke:#e4e4e4}} .a{{stroke:#444}} .m{{fill-opacity:.55;stroke-width:1}}</style>"
    )?;
    writeln!(out, r##"<rect width="100%" height="100%" fill="#fff"/>"##)?;

    // Title line.
    let rank_text = match (ranks.first(), ranks.last()) {
        (Some(a), Some(b)) if a == b => format!("1 rank ({a})"),
        (Some(a), Some(b)) => format!("{} ranks ({a}–{b})", ranks.len()),
        _ => "no ranks".to_string(),
    };
    let mut title = format!(
        "{} — {rank_text} — span {}",
        opts.title,
        fmt_dur(if trace.events.is_empty() { 0.0 } else { span })
    );
    if let Some(k) = opts.map {
        let _ = write!(title, " — map {k} only");
    }
    writeln!(
        out,
        r##"<text x="12" y="22" font-size="15" font-weight="bold">{}<tspan dx="12" font-size="12" font-weight="normal" fill="#666">{} batches, {} steals</tspan></text>"##,
        Esc(&title),
        batch_count,
        steal_count
    )?;

    render_legend(out, &totals)?;

    // Row stripes and labels.
    let font = (row_h * 0.75).min(12.0);
    for (i, rank) in ranks.iter().enumerate() {
        let y = lay.row_y(i);
        if i % 2 == 1 {
            writeln!(
                out,
                r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#f5f5f5"/>"##,
                N(LEFT),
                N(y),
                N(plot_w),
                N(row_h)
            )?;
        }
        writeln!(
            out,
            r#"<text class="l" x="{}" y="{}" font-size="{}" text-anchor="end">rank {rank}</text>"#,
            N(LEFT - 8.0),
            N(y + row_h / 2.0 + font * 0.35),
            N(font)
        )?;
    }

    // Map calls: light bands across all rows, labelled above them.
    for band in map_bands(&trace.events) {
        let (fill, stroke) = match band.balance.as_deref() {
            Some("dynamic") => ("#cfe0f7", "#6f98cf"),
            Some("static") => ("#f6e7c1", "#c9a043"),
            _ => ("#e2e2e2", "#a0a0a0"),
        };
        let x = lay.x(band.start);
        let w = ((band.end - band.start) * lay.px_per_us).max(1.0);
        let label = band.label();
        let mut tip = label.clone();
        if let Some(t) = band.total {
            let _ = write!(tip, ", {t} items");
        }
        let _ = write!(tip, "\nduration {}\nat {}", fmt_dur(band.end - band.start), fmt_dur(band.start - t0));
        writeln!(
            out,
            r#"<rect class="m" x="{}" y="{}" width="{}" height="{}" fill="{fill}" stroke="{stroke}"><title>{}</title></rect>"#,
            N(x),
            N(TOP - 16.0),
            N(w),
            N(rows_bottom - TOP + 16.0),
            Esc(&tip)
        )?;
        writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="11" fill="{stroke}">{}</text>"#,
            N(x + 3.0),
            N(TOP - 4.0),
            Esc(&label)
        )?;
    }

    // Axis with ticks and grid lines.
    let (unit, unit_name) = if span >= 2e6 { (1e6, "s") } else { (1e3, "ms") };
    let span_u = span / unit;
    let step = tick_step(span_u, plot_w / 90.0);
    let decimals = (-step.log10() - 1e-9).ceil().max(0.0) as usize;
    let axis_y = rows_bottom + 6.0;
    writeln!(
        out,
        r#"<g class="a"><line x1="{l}" y1="{y}" x2="{r}" y2="{y}"/>"#,
        l = N(LEFT),
        r = N(LEFT + plot_w),
        y = N(axis_y)
    )?;
    let mut ticks = String::new();
    let mut k = 0u32;
    while f64::from(k) * step <= span_u * (1.0 + 1e-9) && k <= 1000 {
        let v = f64::from(k) * step;
        let x = lay.x(t0 + v * unit);
        writeln!(out, r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#, N(axis_y), N(axis_y + 5.0), x = N(x))?;
        writeln!(
            out,
            r#"<line class="g" x1="{x}" y1="{}" x2="{x}" y2="{}"/>"#,
            N(TOP),
            N(rows_bottom),
            x = N(x)
        )?;
        writeln!(
            ticks,
            r#"<text x="{}" y="{}" text-anchor="middle">{v:.decimals$}</text>"#,
            N(x),
            N(axis_y + 18.0)
        )?;
        k += 1;
    }
    writeln!(out, "</g>")?;
    out.push_str(&ticks);
    writeln!(
        out,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#333">time since start ({unit_name})</text>"##,
        N(LEFT + plot_w / 2.0),
        N(axis_y + 36.0)
    )?;

    // The events, rank by rank: collectives and unknown events, then batches, then steals on top.
    let inner_h = row_h * 0.8;
    let mut batch_rects = 0;
    for (i, RankEvents { batches, steals, collectives, others }) in per_rank.iter().enumerate() {
        let rank = ranks.get(i).copied().unwrap_or(0);
        let y = lay.row_y(i) + (row_h - inner_h) / 2.0;
        for run in merge_simple(collectives, gap) {
            draw_simple(out, &lay, &run, "c", rank, y, inner_h)?;
        }
        for run in merge_simple(others, gap) {
            draw_simple(out, &lay, &run, "o", rank, y + inner_h / 2.0, inner_h / 2.0)?;
        }
        for run in merge_batches(batches, gap) {
            batch_rects += 1;
            draw_batch(out, &lay, &run, rank, y, inner_h)?;
        }
        for s in steals {
            let Kind::Steal { map, victim, got } = s.kind else { continue };
            let mut tip = "steal — rank ".to_string();
            let _ = write!(tip, "{rank}");
            if let Some(v) = victim {
                let _ = write!(tip, " from rank {v}");
            }
            if let Some(g) = got {
                let _ = write!(tip, "\ngot {g} items");
            }
            if let Some(m) = map {
                let _ = write!(tip, "\nmap {m}");
            }
            let _ = write!(tip, "\nduration {}\nat {}", fmt_dur(s.dur), fmt_dur(s.ts - t0));
            writeln!(
                out,
                r#"<rect class="s" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
                N(lay.x(s.ts) - 0.75),
                N(lay.row_y(i)),
                N((s.dur * lay.px_per_us).max(1.5)),
                N(row_h),
                Esc(&tip)
            )?;
        }
    }

    if trace.events.is_empty() {
        writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#999">no events to draw</text>"##,
            N(LEFT + plot_w / 2.0),
            N(TOP + (rows_bottom - TOP) / 2.0 + 4.0)
        )?;
    }
    writeln!(out, "</svg>")?;
    Ok((batch_count, batch_rects))
}

fn render_legend(out: &mut String, totals: &[u64]) -> fmt::Result {
    let y = 34.0;
    writeln!(out, r#"<defs><linearGradient id="items" x1="0" x2="1" y1="0" y2="0">"#)?;
    for i in 0..=10 {
        let p = f64::from(i) / 10.0;
        writeln!(
            out,
            r#"<stop offset="{}" stop-color="{}"/>"#,
            N(p * 100.0).to_string() + "%",
            fill(Some(p))
        )?;
    }
    writeln!(out, "</linearGradient></defs>")?;
    let last = match totals {
        [t] => format!("item {}", t.saturating_sub(1)),
        [] => "item N".to_string(),
        _ => "last item".to_string(),
    };
    let mut x = 12.0;
    writeln!(out, r##"<g class="legend" fill="#333" font-size="11">"##)?;
    writeln!(out, r#"<text x="{}" y="{}">batch colour: item 0</text>"#, N(x), N(y + 9.0))?;
    x += 122.0;
    writeln!(out, r#"<rect x="{}" y="{}" width="200" height="10" fill="url(#items)"/>"#, N(x), N(y))?;
    x += 206.0;
    writeln!(out, r#"<text x="{}" y="{}">→ {}</text>"#, N(x), N(y + 9.0), Esc(&last))?;
    x += 30.0 + 6.5 * last.chars().count() as f64;
    let swatches: [(&str, &str); 4] = [
        (r##"fill="#111""##, "steal"),
        (r##"fill="#9a9a9a""##, "collective"),
        (r##"fill="#f6e7c1" stroke="#c9a043""##, "static map"),
        (r##"fill="#cfe0f7" stroke="#6f98cf""##, "dynamic map"),
    ];
    for (attrs, label) in swatches {
        let w = if label == "steal" { 2.0 } else { 14.0 };
        writeln!(out, r#"<rect {attrs} x="{}" y="{}" width="{}" height="10"/>"#, N(x), N(y), N(w))?;
        writeln!(out, r#"<text x="{}" y="{}">{label}</text>"#, N(x + w + 4.0), N(y + 9.0))?;
        x += w + 14.0 + 6.5 * label.len() as f64;
    }
    writeln!(out, "</g>")
}

fn draw_batch(out: &mut String, lay: &Layout, run: &BatchRun, rank: u64, y: f64, h: f64) -> fmt::Result {
    let mut tip = if run.batches == 1 { "batch".to_string() } else { format!("{} batches", run.batches) };
    let _ = write!(tip, " — rank {rank}");
    if let Some(m) = run.map {
        let _ = write!(tip, "\nmap {m}");
    }
    if let Some((lo, hi)) = run.items {
        let _ = write!(tip, "\nitems {lo}–{hi}");
        if run.count > 0 {
            let _ = write!(tip, " ({} items", run.count);
            if let Some(t) = run.total {
                let _ = write!(tip, " of {t}");
            }
            tip.push(')');
        }
    }
    timing_tip(&mut tip, run.batches, run.start, run.end, run.busy, lay.t0);
    writeln!(
        out,
        r#"<rect class="b" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>"#,
        N(lay.x(run.start)),
        N(y),
        N(((run.end - run.start) * lay.px_per_us).max(0.5)),
        N(h),
        fill(run.position()),
        Esc(&tip)
    )
}

/// Appends a merged run's duration (and busy time when several events were merged) and start.
fn timing_tip(tip: &mut String, events: usize, start: f64, end: f64, busy: f64, t0: f64) {
    if events == 1 {
        let _ = write!(tip, "\nduration {}", fmt_dur(busy));
    } else {
        let _ = write!(tip, "\nduration {} (busy {})", fmt_dur(end - start), fmt_dur(busy));
    }
    let _ = write!(tip, "\nat {}", fmt_dur(start - t0));
}

fn draw_simple(
    out: &mut String,
    lay: &Layout,
    run: &SimpleRun<'_>,
    class: &str,
    rank: u64,
    y: f64,
    h: f64,
) -> fmt::Result {
    let mut tip = run.name.to_string();
    if run.events > 1 {
        let _ = write!(tip, " ×{}", run.events);
    }
    match run.calls {
        Some((a, b)) if a == b => {
            let _ = write!(tip, " (call {a})");
        }
        Some((a, b)) => {
            let _ = write!(tip, " (calls {a}–{b})");
        }
        None => {}
    }
    let _ = write!(tip, " — rank {rank}");
    if !run.cat.is_empty() && run.cat != "collective" {
        let _ = write!(tip, "\ncategory {}", run.cat);
    }
    timing_tip(&mut tip, run.events, run.start, run.end, run.busy, lay.t0);
    writeln!(
        out,
        r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
        N(lay.x(run.start)),
        N(y),
        N(((run.end - run.start) * lay.px_per_us).max(0.5)),
        N(h),
        Esc(&tip)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trace::{self, ParseError};

    /// A synthetic trace of one parallel map of `items` items on `ranks` ranks in batches of `batch`,
    /// static (each rank runs its own block) or dynamic (idle ranks steal half of the largest queue).
    /// Items get slower towards the end, so a static run is unbalanced.
    pub(crate) fn synthetic(ranks: u64, items: u64, batch: u64, dynamic: bool, map: u64) -> String {
        let cost = |i: u64| 2.0 + 6.0 * i as f64 / items as f64 + ((i * 7919) % 13) as f64 * 0.1;
        let t_start: f64 = 1_732_550_000_000_000.0;
        let mut events = Vec::new();
        for r in 0..ranks {
            events.push(format!(
                r#"{{"name":"thread_name","ph":"M","pid":0,"tid":{r},"args":{{"name":"rank {r}"}}}}"#
            ));
        }
        let mut queues: Vec<(u64, u64)> =
            (0..ranks).map(|r| (r * items / ranks, (r + 1) * items / ranks)).collect();
        let mut clock = vec![t_start; ranks as usize];
        let mut done = vec![false; ranks as usize];
        while let Some(r) =
            (0..ranks as usize).filter(|&r| !done[r]).min_by(|&a, &b| clock[a].total_cmp(&clock[b]))
        {
            let (lo, hi) = queues[r];
            if lo < hi {
                let end = (lo + batch).min(hi);
                let dur: f64 = (lo..end).map(cost).sum();
                events.push(format!(
                    r#"{{"name":"batch","cat":"map","ph":"X","ts":{},"dur":{dur},"pid":0,"tid":{r},"args":{{"map":{map},"first":{lo},"count":{},"total":{items}}}}}"#,
                    clock[r],
                    end - lo
                ));
                clock[r] += dur;
                queues[r].0 = end;
                continue;
            }
            let victim = (0..ranks as usize).max_by_key(|&v| queues[v].1 - queues[v].0);
            match victim {
                Some(v) if dynamic && queues[v].1 - queues[v].0 >= 2 => {
                    let (vlo, vhi) = queues[v];
                    let mid = vlo + (vhi - vlo) / 2;
                    queues[v].1 = mid;
                    queues[r] = (mid, vhi);
                    events.push(format!(
                        r#"{{"name":"steal","cat":"map","ph":"X","ts":{},"dur":4.0,"pid":0,"tid":{r},"args":{{"map":{map},"victim":{v},"got":{}}}}}"#,
                        clock[r],
                        vhi - mid
                    ));
                    clock[r] += 4.0;
                }
                _ => done[r] = true,
            }
        }
        let end = clock.iter().copied().fold(t_start, f64::max);
        for (r, t) in clock.iter().enumerate() {
            events.push(format!(
                r#"{{"name":"allreduce","cat":"collective","ph":"X","ts":{t},"dur":{},"pid":0,"tid":{r},"args":{{"call":{map}}}}}"#,
                end - t + 3.0
            ));
        }
        events.push(format!(
            r#"{{"name":"map","cat":"map","ph":"X","ts":{t_start},"dur":{},"pid":0,"tid":0,"args":{{"map":{map},"total":{items},"balance":"{}"}}}}"#,
            end - t_start + 3.0,
            if dynamic { "dynamic" } else { "static" }
        ));
        format!("{{\"traceEvents\": [\n{}\n], \"displayTimeUnit\": \"ms\"}}", events.join(",\n"))
    }

    fn draw(trace: &Trace) -> Rendered {
        render(trace, &Options { width: 1200, title: "t.json".to_string(), map: None })
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn draws_the_example() -> Result<(), ParseError> {
        let t = trace::parse(trace::tests::EXAMPLE)?;
        let r = draw(&t);
        let svg = &r.svg;
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        // One label per rank, in order.
        for rank in [0, 1, 3] {
            assert_eq!(count(svg, &format!(">rank {rank}</text>")), 1, "rank {rank}");
        }
        assert_eq!(count(svg, ">rank "), 3);
        assert!(!svg.contains(">rank 2<"));
        // The batch, its colour (1200 / 5000 of the hue range) and its tooltip.
        assert_eq!((r.batches, r.batch_rects), (1, 1));
        assert_eq!(count(svg, r#"class="b""#), 1);
        assert!(svg.contains(&format!("fill=\"hsl({},70%,55%)\"", N(0.24 * HUE_RANGE))), "{svg}");
        assert!(
            svg.contains(
                "<title>batch — rank 3\nmap 2\nitems 1200–1236 (37 items of 5000)\nduration 48.2 µs"
            )
        );
        // Steal, collective, map band.
        assert_eq!(count(svg, r#"<rect class="s" x"#), 1);
        assert!(svg.contains("steal — rank 1 from rank 0\ngot 812 items"));
        assert_eq!(count(svg, r#"<rect class="c" x"#), 1);
        assert!(svg.contains("allreduce (call 7) — rank 0"));
        assert!(svg.contains(">map 2 (dynamic)</text>"));
        // Legend, title, axis.
        assert!(svg.contains(r#"id="items""#) && svg.contains(r#"fill="url(#items)""#));
        assert!(svg.contains("batch colour: item 0") && svg.contains("→ item 4999"));
        assert!(svg.contains("t.json — 3 ranks (0–3) — span 150.0 µs"));
        assert!(svg.contains("time since start (ms)"));
        Ok(())
    }

    #[test]
    fn unknown_events_are_drawn_generically_and_text_is_escaped() -> Result<(), ParseError> {
        let t = trace::parse(
            r#"{"traceEvents": [
              {"name": "a<b&c", "cat": "jit", "ph": "X", "ts": 10, "dur": 5, "tid": 2},
              {"name": "batch", "ph": "X", "ts": 20, "dur": 5, "tid": 1},
              {"name": "i", "ph": "i", "ts": 30, "tid": 5}
            ]}"#,
        )?;
        let svg = draw(&t).svg;
        assert_eq!(count(svg.as_str(), r#"class="o""#), 1);
        assert!(svg.contains("a&lt;b&amp;c — rank 2\ncategory jit"));
        assert_eq!(count(&svg, r#"class="b""#), 1);
        assert!(svg.contains(&format!("fill=\"{NEUTRAL}\"")));
        assert_eq!(count(&svg, ">rank "), 2);
        Ok(())
    }

    #[test]
    fn an_empty_trace_still_draws() -> Result<(), ParseError> {
        let svg = draw(&trace::parse(r#"{"traceEvents": []}"#)?).svg;
        assert!(svg.starts_with("<svg") && svg.contains("no events to draw") && svg.contains("no ranks"));
        Ok(())
    }

    #[test]
    fn merging_keeps_ten_thousand_batches_small() -> Result<(), ParseError> {
        for dynamic in [false, true] {
            let t = trace::parse(&synthetic(8, 40_000, 4, dynamic, 1))?;
            let r = draw(&t);
            assert!(r.batches >= 10_000, "{}", r.batches);
            assert_eq!(count(&r.svg, r#"class="b""#), r.batch_rects);
            assert!(r.batch_rects < 600, "dynamic={dynamic}: {} rectangles", r.batch_rects);
            assert!(r.svg.len() < 400_000, "dynamic={dynamic}: {} bytes", r.svg.len());
            assert_eq!(count(&r.svg, ">rank "), 8);
        }
        Ok(())
    }

    #[test]
    fn merge_rules() -> Result<(), ParseError> {
        let ev = |ts: f64, dur: f64, first: u64, map: u64| Event {
            name: "batch".to_string(),
            cat: "map".to_string(),
            ts,
            dur,
            rank: 0,
            kind: Kind::Batch { map: Some(map), first: Some(first), count: Some(10), total: Some(1000) },
        };
        let events = [
            ev(0.0, 10.0, 0, 1),
            ev(10.5, 10.0, 10, 1),  // gap under one unit, next items: merges
            ev(25.0, 10.0, 20, 1),  // gap of 4.5: separate
            ev(35.0, 10.0, 500, 1), // back to back but far away in colour: separate
            ev(45.0, 10.0, 510, 2), // another map: separate
        ];
        let refs: Vec<&Event> = events.iter().rev().collect();
        let runs = merge_batches(&refs, 1.0);
        assert_eq!(runs.len(), 4);
        assert_eq!((runs[0].batches, runs[0].items, runs[0].count), (2, Some((0, 19)), 20));
        assert_eq!((runs[0].start, runs[0].end, runs[0].busy), (0.0, 20.5, 20.0));
        assert_eq!(runs[0].position(), Some(0.005));
        assert_eq!(runs[2].position(), Some(0.5));
        // Colours drift slowly along a static rank's block but a run never spans more than the tolerance.
        let many: Vec<Event> = (0..1000).map(|i| ev(i as f64, 1.0, i * 10, 1)).collect();
        let refs: Vec<&Event> = many.iter().collect();
        let runs = merge_batches(&refs, 1.0);
        assert!((40..=60).contains(&runs.len()), "{}", runs.len());
        assert_eq!(runs.iter().map(|r| r.batches).sum::<usize>(), 1000);
        Ok(())
    }

    #[test]
    fn ticks_and_numbers() {
        assert_eq!(tick_step(10.0, 10.0), 1.0);
        assert_eq!(tick_step(13.0, 10.0), 2.0);
        assert_eq!(tick_step(0.4, 10.0), 0.05);
        assert_eq!(tick_step(7000.0, 10.0), 1000.0);
        assert_eq!(N(3.0).to_string(), "3");
        assert_eq!(N(3.04).to_string(), "3");
        assert_eq!(N(3.06).to_string(), "3.1");
        assert_eq!(fmt_dur(48.2), "48.2 µs");
        assert_eq!(fmt_dur(12_345.0), "12.35 ms");
        assert_eq!(fmt_dur(2_500_000.0), "2.500 s");
    }
}
