//! Encode and decode throughput of one scheme on one core, for
//! `scripts/bench-ec.sh`: prints `encode GB/s` and `decode GB/s` (segment
//! bytes per second; decode has the first two data fragments missing), and
//! `encode_into GB/s`, encoding into reused buffers.
//!
//!     ec_bench EC_TYPE K M [SEGMENT_SIZE] [SECONDS]

use std::time::{Duration, Instant};

use apus_ec::{EcScheme, EcType};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ec_bench EC_TYPE K M [SEGMENT_SIZE] [SECONDS]";
    let arg = |i: usize| args.get(i).ok_or_else(|| usage.to_owned());
    let ec_type: EcType = arg(0)?.parse().map_err(|e| format!("{e}"))?;
    let k: usize = arg(1)?.parse().map_err(|_| usage.to_owned())?;
    let m: usize = arg(2)?.parse().map_err(|_| usage.to_owned())?;
    let segment_size: usize = match args.get(3) {
        Some(s) => s.parse().map_err(|_| usage.to_owned())?,
        None => 1 << 20,
    };
    let seconds: f64 = match args.get(4) {
        Some(s) => s.parse().map_err(|_| usage.to_owned())?,
        None => 2.0,
    };
    let scheme = EcScheme::new(ec_type, k, m).map_err(|e| e.to_string())?;
    // Incompressible, non-repeating content.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let segment: Vec<u8> = (0..segment_size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let budget = Duration::from_secs_f64(seconds);

    let fragments = scheme.encode(&segment).map_err(|e| e.to_string())?;
    let encode = rate(segment_size, budget, || {
        scheme.encode(&segment).map(drop).map_err(|e| e.to_string())
    })?;
    let mut buffers = Vec::new();
    let encode_reusing = rate(segment_size, budget, || {
        scheme
            .encode_into(&segment, &mut buffers)
            .map_err(|e| e.to_string())
    })?;
    let survivors = &fragments[2..];
    let decoded = scheme.decode(survivors).map_err(|e| e.to_string())?;
    if decoded != segment {
        return Err("decode returned different bytes".into());
    }
    let decode = rate(segment_size, budget, || {
        scheme
            .decode(survivors)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    println!("encode {encode:.3}");
    println!("decode {decode:.3}");
    println!("encode_into {encode_reusing:.3}");
    Ok(())
}

/// Runs `op` repeatedly for about `budget` and returns GB/s of `bytes`.
fn rate(
    bytes: usize,
    budget: Duration,
    mut op: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    op()?;
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        op()?;
        runs += 1;
    }
    Ok(bytes as f64 * runs as f64 / start.elapsed().as_secs_f64() / 1e9)
}
