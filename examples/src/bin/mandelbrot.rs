//! The Mandelbrot set, one row per map item: naturally uneven work, balanced by work stealing.
//!
//! Rows of the region `-2.5..1.0` (real) by a height-matched imaginary range centred on 0 are
//! computed with [`prun::Communicator::map_range`] (rows through the set cost up to
//! [`MAX_ITER`] iterations per pixel, rows outside it a few). Rank 0 writes the image as a
//! binary PGM (`P5`): black inside the set, grey levels by the logarithm of the escape count
//! outside. It prints `wrote PATH (W x H), T s`, `T` being the map's wall time.
//!
//! Checks: the pixel holding `c = -0.25 + 0i`, in the main cardioid, reaches [`MAX_ITER`]; the
//! first, middle and last rows equal a sequential computation; not every row is the same. The job exits non-zero otherwise,
//! or when the file cannot be written.
//!
//! `prun -n 4 target/release/mandelbrot [PATH] [WIDTH] [HEIGHT]` (default `mandelbrot.pgm`,
//! 800 x 600).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

/// Iterations after which a point counts as inside the set.
const MAX_ITER: u32 = 1000;
/// Left and right ends of the real axis shown.
const RE_MIN: f64 = -2.5;
const RE_MAX: f64 = 1.0;

/// The image's size and the mapping from pixels to points of the plane.
struct View {
    width: usize,
    height: usize,
    /// Width (and height) of one pixel in the plane.
    step: f64,
    /// Imaginary part of the top edge.
    im_max: f64,
}

impl View {
    fn new(width: usize, height: usize) -> View {
        let step = (RE_MAX - RE_MIN) / width as f64;
        View { width, height, step, im_max: step * height as f64 / 2.0 }
    }

    /// The point at the centre of pixel (`col`, `row`).
    fn point(&self, col: usize, row: usize) -> (f64, f64) {
        (RE_MIN + (col as f64 + 0.5) * self.step, self.im_max - (row as f64 + 0.5) * self.step)
    }

    /// The pixel holding the point (`re`, `im`), if it is in the image.
    fn pixel(&self, re: f64, im: f64) -> Option<(usize, usize)> {
        let col = ((re - RE_MIN) / self.step).floor();
        let row = ((self.im_max - im) / self.step).floor();
        let inside = col >= 0.0 && row >= 0.0 && col < self.width as f64 && row < self.height as f64;
        inside.then_some((col as usize, row as usize))
    }

    /// Escape counts of one row.
    fn row(&self, row: usize) -> Vec<u32> {
        (0..self.width)
            .map(|col| {
                let (re, im) = self.point(col, row);
                escape(re, im)
            })
            .collect()
    }
}

/// Iterations of `z = z^2 + c` from 0 before `|z| > 2`, at most [`MAX_ITER`].
fn escape(re: f64, im: f64) -> u32 {
    let (mut x, mut y) = (0.0f64, 0.0f64);
    for i in 0..MAX_ITER {
        let (x2, y2) = (x * x, y * y);
        if x2 + y2 > 4.0 {
            return i;
        }
        y = 2.0 * x * y + im;
        x = x2 - y2 + re;
    }
    MAX_ITER
}

/// Grey level of an escape count: black inside, brighter the longer a point took to escape.
fn grey(count: u32) -> u8 {
    if count >= MAX_ITER {
        return 0;
    }
    let level = 255.0 * ((count + 1) as f64).ln() / ((MAX_ITER + 1) as f64).ln();
    // `level` is between 0 and 255: the cast cannot saturate
    level as u8
}

/// Writes the rows as a binary PGM file.
fn write_pgm(path: &str, view: &View, rows: &[Vec<u32>]) -> std::io::Result<()> {
    let mut data = format!("P5\n{} {}\n255\n", view.width, view.height).into_bytes();
    data.reserve(view.width * view.height);
    for row in rows {
        data.extend(row.iter().map(|&c| grey(c)));
    }
    let mut file = std::fs::File::create(path)?;
    file.write_all(&data)?;
    file.sync_all()
}

/// Checks the image against what is known of the set; reports what is wrong.
fn check(view: &View, rows: &[Vec<u32>]) -> Result<(), String> {
    if rows.len() != view.height || rows.iter().any(|r| r.len() != view.width) {
        return Err(format!("{} rows instead of {} of {} pixels", rows.len(), view.height, view.width));
    }
    // the pixel's centre is within a pixel of c = -0.25, deep in the main cardioid (which
    // reaches out to -0.75 and 0.25 on the real axis) when pixels are small enough
    if let Some((col, row)) = view.pixel(-0.25, 0.0).filter(|_| view.step < 0.1) {
        let count = rows[row][col];
        if count != MAX_ITER {
            return Err(format!("pixel ({col}, {row}) at c = -0.25 escaped after {count} iterations"));
        }
    }
    // the map put each row in its place: the first, middle and last rows, recomputed here
    // (`main` accepts only positive heights, so `height - 1` cannot underflow)
    for r in [0, view.height / 2, view.height - 1] {
        if rows[r] != view.row(r) {
            return Err(format!("row {r} differs from a sequential computation"));
        }
    }
    if rows.len() > 1 && rows.iter().all(|r| r == &rows[0]) {
        return Err("every row is the same".into());
    }
    Ok(())
}

fn run(path: &str, view: View) -> Result<bool, prun::Error> {
    let world = prun::init()?;
    world.barrier()?;
    let start = Instant::now();
    let rows = world.map_range(0, view.height, |row| view.row(row))?;
    let seconds = start.elapsed().as_secs_f64();
    let Some(rows) = rows else { return Ok(true) };
    if let Err(e) = check(&view, &rows) {
        eprintln!("mandelbrot: wrong image: {e}");
        return Ok(false);
    }
    if let Err(e) = write_pgm(path, &view, &rows) {
        eprintln!("mandelbrot: cannot write {path}: {e}");
        return Ok(false);
    }
    println!("wrote {path} ({} x {}), {seconds:.3} s", view.width, view.height);
    Ok(true)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("mandelbrot.pgm", |p| p.as_str());
    let size = |i: usize, default: usize| match args.get(i) {
        None => Some(default),
        Some(a) => a.parse().ok().filter(|&n| n > 0),
    };
    let (Some(width), Some(height)) = (size(1, 800), size(2, 600)) else {
        eprintln!(
            "mandelbrot: WIDTH and HEIGHT must be positive whole numbers; usage: mandelbrot [PATH] [WIDTH] [HEIGHT]"
        );
        return ExitCode::from(2);
    };
    match run(path, View::new(width, height)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mandelbrot: {e}");
            ExitCode::FAILURE
        }
    }
}
