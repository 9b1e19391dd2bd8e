//! Chooses the serde codec for prun's typed messages by measurement.
//!
//! Encodes and decodes three payloads typical of SPMD programs (a small control message, a record
//! with strings and nested vectors, a large `Vec<f64>`) with each maintained serde codec and prints
//! the time per round trip and the encoded size. `wincode` is not measured: it has no serde
//! support, and prun must accept any `T: Serialize + DeserializeOwned`. `bincode` 2.0.1 (the last
//! working release, unmaintained) is measured as the reference.
//!
//! Run: `cargo run --release -p prun-bench --bin codecbench`

use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Small {
    step: u64,
    rank: u32,
    done: bool,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Record {
    name: String,
    ids: Vec<u32>,
    weights: Vec<f32>,
    tags: Vec<String>,
    nested: Vec<Small>,
}

fn payloads() -> (Small, Vec<Record>, Vec<f64>) {
    let small = Small { step: 123_456, rank: 17, done: false };
    let records = (0..200)
        .map(|i| Record {
            name: format!("item-{i}"),
            ids: (0..16).map(|j| i * 31 + j).collect(),
            weights: (0..16).map(|j| j as f32 * 0.5).collect(),
            tags: vec!["alpha".into(), "beta".into()],
            nested: (0..4).map(|j| Small { step: j, rank: i, done: j % 2 == 0 }).collect(),
        })
        .collect();
    let floats = (0..1 << 20).map(|i| i as f64 * 1.000_1).collect();
    (small, records, floats)
}

/// Median time of one encode+decode round trip.
fn time<F: FnMut()>(mut f: F) -> Duration {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 15 || (start.elapsed() < Duration::from_millis(300) && samples.len() < 10_000) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

trait Codec {
    const NAME: &'static str;
    fn enc<T: Serialize>(v: &T) -> Vec<u8>;
    fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> T;
}

struct Postcard;
impl Codec for Postcard {
    const NAME: &'static str = "postcard 1";
    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_stdvec(v).expect("encode")
    }
    fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
        postcard::from_bytes(b).expect("decode")
    }
}

struct Bitcode;
impl Codec for Bitcode {
    const NAME: &'static str = "bitcode 0.6 (serde)";
    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        bitcode::serialize(v).expect("encode")
    }
    fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
        bitcode::deserialize(b).expect("decode")
    }
}

struct Bincode2;
impl Codec for Bincode2 {
    const NAME: &'static str = "bincode 2.0.1 (serde)";
    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encode")
    }
    fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
        bincode::serde::decode_from_slice(b, bincode::config::standard()).expect("decode").0
    }
}

fn run<C: Codec>() {
    let (small, records, floats) = payloads();
    let mut row = format!("| {:<22}", C::NAME);
    macro_rules! case {
        ($v:expr, $t:ty) => {{
            let bytes = C::enc(&$v);
            assert_eq!(C::dec::<$t>(&bytes), $v, "{} round trip", C::NAME);
            let d = time(|| {
                let b = C::enc(black_box(&$v));
                black_box(C::dec::<$t>(&b));
            });
            row += &format!("| {:>9.2} us {:>9} B ", d.as_secs_f64() * 1e6, bytes.len());
        }};
    }
    case!(small, Small);
    case!(records, Vec<Record>);
    case!(floats, Vec<f64>);
    println!("{row}|");
}

fn main() {
    println!(
        "| codec                  | small struct           | 200 records            | 1 Mi f64               |"
    );
    println!(
        "| ---                    | ---                    | ---                    | ---                    |"
    );
    run::<Postcard>();
    run::<Bitcode>();
    run::<Bincode2>();
}
