//! GF(2^8) region-kernel throughput, per kernel this CPU has: the fused
//! dot product (every source read once for all outputs) against one
//! multiply-accumulate pass per coefficient, for k sources and m outputs.
//! Best of many interleaved runs, so a busy machine disturbs it little.
//! Prints GB/s of source data (k regions of 1 MiB / k bytes each).
//!
//!     kernel_bench [K+M ...]    (default: 4+2 8+3 10+4)

use std::time::{Duration, Instant};

use apus_ec::kernel::{gf256_dot_prod_with, mul_acc_with, Gf256Coefficients, Kernel, Multiplier};
use apus_ec::Field;

fn main() -> Result<(), String> {
    let mut schemes: Vec<String> = std::env::args().skip(1).collect();
    if schemes.is_empty() {
        schemes = ["4+2", "8+3", "10+4"].map(String::from).to_vec();
    }
    println!(
        "{:<6} {:<10} {:>12} {:>12}",
        "k+m", "kernel", "per-coeff", "fused"
    );
    for scheme in &schemes {
        let parse = |s: Option<&str>| s.and_then(|s| s.parse::<usize>().ok());
        let mut parts = scheme.split('+');
        let (Some(k), Some(m)) = (parse(parts.next()), parse(parts.next())) else {
            return Err(format!("not K+M: {scheme}"));
        };
        let len = (1 << 20) / k;
        let mut x = 0x2545_f491_4f6c_dd1du64 ^ (k * 31 + m) as u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        };
        let rows: Vec<Vec<u8>> = (0..m)
            .map(|_| (0..k).map(|_| next().max(2)).collect())
            .collect();
        let sources: Vec<Vec<u8>> = (0..k).map(|_| (0..len).map(|_| next()).collect()).collect();
        let row_refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let source_refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
        let coefficients = Gf256Coefficients::new(&row_refs);
        let multipliers: Vec<Vec<Multiplier>> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&c| Multiplier::new(Field::Gf256, c.into()))
                    .collect()
            })
            .collect();
        let mut outputs = vec![vec![0u8; len]; m];
        for kernel in Kernel::available() {
            let mut best = [Duration::MAX; 2];
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline {
                let start = Instant::now();
                for (output, row) in outputs.iter_mut().zip(&multipliers) {
                    output.fill(0);
                    for (source, multiplier) in sources.iter().zip(row) {
                        mul_acc_with(kernel, output, source, multiplier);
                    }
                }
                best[0] = best[0].min(start.elapsed());
                let start = Instant::now();
                let mut refs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
                gf256_dot_prod_with(kernel, &coefficients, &source_refs, &mut refs);
                best[1] = best[1].min(start.elapsed());
            }
            let rate = |d: Duration| (k * len) as f64 / d.as_secs_f64() / 1e9;
            println!(
                "{:<6} {:<10} {:>12.3} {:>12.3}",
                scheme,
                format!("{kernel:?}"),
                rate(best[0]),
                rate(best[1])
            );
        }
    }
    Ok(())
}
