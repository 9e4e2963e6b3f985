//! Leak analysis: robust growth estimates over a series that see through the GC sawtooth.
//!
//! Pure functions, no I/O, deterministic: the sampler feeds them what it read; tests feed them
//! traces. The approach:
//!
//! - **Floor points.** A heap that grows and falls back is healthy; a heap whose floor keeps rising
//!   leaks. The floor is observed exactly at each full GC where the inspector reports the heap
//!   right after it; elsewhere it is taken as the lowest value after each significant drop (a GC,
//!   or memory returned), which [`floor_points`] finds. A series with no drops is its own floor.
//! - **Theil–Sen slope** of the floor points: the median of the slopes of all pairs, which ignores
//!   up to ~29% of outliers (a full GC that frees more than usual, a burst) where least squares
//!   would follow them.
//! - **Mann–Kendall test** for a monotonic upward trend: the confidence that the floor rises at all,
//!   without assuming the rise is linear or the noise normal.
//!
//! Whether a confident rise is a leak worth waking someone for is decided by the caller against a
//! minimum rate; see the README.

/// Theil–Sen slope (units per second) of `(t, v)` points; none with fewer than two distinct times.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dt = b.0 - a.0;
            if dt.abs() > f64::EPSILON {
                slopes.push((b.1 - a.1) / dt);
            }
        }
    }
    median(&mut slopes)
}

fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (_, upper, _) = values.select_nth_unstable_by(n / 2, |a, b| a.total_cmp(b));
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

/// At most this many points enter the quadratic estimators; more are thinned evenly, which
/// keeps both estimates consistent and bounds their cost.
pub const MAX_POINTS: usize = 60;

fn thin(points: &[(f64, f64)]) -> std::borrow::Cow<'_, [(f64, f64)]> {
    if points.len() <= MAX_POINTS {
        return std::borrow::Cow::Borrowed(points);
    }
    let step = points.len() as f64 / MAX_POINTS as f64;
    std::borrow::Cow::Owned((0..MAX_POINTS).map(|i| points[(i as f64 * step) as usize]).collect())
}

/// Mann–Kendall: the confidence (0 to 1) that `values`, in time order, trend upward: one minus
/// the one-sided p-value of Kendall's S. Without ties and up to [`EXACT_UP_TO`] values the null
/// distribution of S is exact (Mahonian numbers): the normal approximation is very conservative
/// in the far tail at small n (7 strictly rising values have p = 1/7! = 2e-4; the approximation
/// says 2e-3), and the far tail is where a detector re-tested all day must decide. Otherwise the
/// normal approximation, with the variance corrected for ties and a continuity correction. 0.5
/// means no evidence either way, values near 0 a downward trend.
pub fn mann_kendall_confidence(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 3 {
        return 0.5;
    }
    let mut s: i64 = 0;
    let mut tied_pairs = false;
    for i in 0..n {
        for j in i + 1..n {
            s += match values[j].partial_cmp(&values[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => {
                    tied_pairs = true;
                    0
                }
            };
        }
    }
    if !tied_pairs && n <= EXACT_UP_TO {
        return 1.0 - exact_upper_tail(n, s);
    }
    // Tie groups reduce the variance.
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mut ties = 0.0;
    let mut run = 1usize;
    for i in 1..=n {
        if i < n && sorted[i] == sorted[i - 1] {
            run += 1;
        } else {
            if run > 1 {
                let t = run as f64;
                ties += t * (t - 1.0) * (2.0 * t + 5.0);
            }
            run = 1;
        }
    }
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    if var <= 0.0 {
        return 0.5;
    }
    let z = match s {
        0 => 0.0,
        s if s > 0 => (s as f64 - 1.0) / var.sqrt(),
        s => (s as f64 + 1.0) / var.sqrt(),
    };
    normal_cdf(z)
}

/// Up to this many values without ties, [`mann_kendall_confidence`] is exact.
pub const EXACT_UP_TO: usize = 20;

/// P(S ≥ s) for Kendall's S of `n` values in random order, without ties. S = pairs − 2 ×
/// inversions, so this is the share of permutations with at most (pairs − s) / 2 inversions:
/// Mahonian numbers, built by the recurrence I(n, k) = Σ_{j<n} I(n−1, k−j) (tiny for n ≤ 20:
/// at most 191 counts, as f64 shares).
fn exact_upper_tail(n: usize, s: i64) -> f64 {
    let pairs = (n * (n - 1) / 2) as i64;
    if s > pairs {
        return 0.0;
    }
    let max_inversions = ((pairs - s) / 2) as usize;
    // Shares of permutations of m values with k inversions, m = 1..n.
    let mut shares = vec![1.0f64];
    for m in 2..=n {
        let len = shares.len() + m - 1;
        let mut next = vec![0.0f64; len];
        // next[k] = (shares[k] + shares[k-1] + ... + shares[k-m+1]) / m, by a running sum.
        let mut window = 0.0;
        for (k, slot) in next.iter_mut().enumerate() {
            if k < shares.len() {
                window += shares[k];
            }
            if k >= m && k - m < shares.len() {
                window -= shares[k - m];
            }
            *slot = window / m as f64;
        }
        shares = next;
    }
    shares.iter().take(max_inversions + 1).sum::<f64>().min(1.0)
}

/// The standard normal CDF (Abramowitz and Stegun 7.1.26, error below 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The floor of a sawtooth: the lowest value after each significant drop. A drop is significant
/// when it falls by more than `min_drop` (in the series' units) from the running peak. Without
/// any drop, every point is a floor point (nothing was ever freed).
pub fn floor_points(series: &[(f64, f64)], min_drop: f64) -> Vec<(f64, f64)> {
    let (floors, drops) = floor_points_counted(series, min_drop);
    if drops == 0 {
        return series.to_vec();
    }
    floors
}

/// The lows after each significant drop, and how many drops there were (no fallback).
pub fn floor_points_counted(series: &[(f64, f64)], min_drop: f64) -> (Vec<(f64, f64)>, usize) {
    let mut floors = Vec::new();
    let mut peak = f64::NEG_INFINITY;
    let mut in_drop: Option<(f64, f64)> = None;
    let mut dropped = false;
    for &(t, v) in series {
        match in_drop {
            Some((_, low)) if v <= low => in_drop = Some((t, v)),
            Some(low) => {
                // The drop ended: its lowest point is the floor after this GC.
                floors.push(low);
                in_drop = None;
                peak = v;
            }
            None if v < peak - min_drop => {
                in_drop = Some((t, v));
                dropped = true;
            }
            None => peak = peak.max(v),
        }
    }
    if let Some(low) = in_drop {
        floors.push(low);
    }
    let _ = dropped;
    let drops = floors.len();
    (floors, drops)
}

/// The growth estimate of one signal over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Units per second (bytes/s, or count/s), from the floor.
    pub slope: f64,
    /// Confidence (0 to 1) that the floor rises.
    pub confidence: f64,
    /// Floor points the estimate rests on.
    pub points: usize,
}

/// Estimates growth from a series of `(t, v)` in time order: the Theil–Sen slope and Mann–Kendall
/// confidence of its floor points.
pub fn estimate(series: &[(f64, f64)], min_drop: f64) -> Option<Estimate> {
    let floors = floor_points(series, min_drop);
    estimate_floor(&floors)
}

/// As [`estimate`], for points that are already floor values (post-GC heap sizes).
pub fn estimate_floor(floors: &[(f64, f64)]) -> Option<Estimate> {
    let thinned = thin(floors);
    let slope = theil_sen(&thinned)?;
    let values: Vec<f64> = thinned.iter().map(|p| p.1).collect();
    Some(Estimate { slope, confidence: mann_kendall_confidence(&values), points: floors.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// A deterministic pseudo-random generator for traces (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A heap sawtooth at 5 s sampling: climbs `amplitude` over `gc_period`, falls back to a floor
    /// that rises `leak` bytes per second, with noise.
    fn sawtooth(minutes: f64, amplitude: f64, gc_period: f64, leak: f64, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = Rng(seed | 1);
        let mut out = Vec::new();
        let mut t = 0.0;
        while t < minutes * 60.0 {
            let phase = (t % gc_period) / gc_period;
            let v = 100.0 * MIB + leak * t + amplitude * phase + rng.next() * 0.02 * amplitude;
            out.push((t, v));
            t += 5.0;
        }
        out
    }

    #[test]
    fn theil_sen_ignores_outliers() {
        let mut points: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 2.0 * i as f64)).collect();
        points[5].1 = 1000.0;
        points[12].1 = -1000.0;
        assert!((theil_sen(&points).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(theil_sen(&[(1.0, 1.0)]), None);
    }

    #[test]
    fn mann_kendall_sees_trends_and_their_absence() {
        let up: Vec<f64> = (0..20).map(|i| i as f64).collect();
        assert!(mann_kendall_confidence(&up) > 0.999);
        let down: Vec<f64> = up.iter().rev().copied().collect();
        assert!(mann_kendall_confidence(&down) < 0.001);
        let flat = vec![5.0; 20];
        assert_eq!(mann_kendall_confidence(&flat), 0.5);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-9 && (normal_cdf(1.96) - 0.975).abs() < 1e-3);
    }

    #[test]
    fn a_leak_under_a_sawtooth_is_seen_in_ten_minutes() {
        // 1 MiB/min under a 50 MiB sawtooth with a 30 s GC period, 10 minutes of 5 s samples.
        let trace = sawtooth(10.0, 50.0 * MIB, 30.0, MIB / 60.0, 7);
        let e = estimate(&trace, 5.0 * MIB).unwrap();
        assert!((e.slope - MIB / 60.0).abs() < 0.2 * MIB / 60.0, "slope {} B/s", e.slope);
        assert!(e.confidence > 0.99, "{e:?}");
    }

    #[test]
    fn a_healthy_sawtooth_is_not_a_leak() {
        for seed in 1..20 {
            let trace = sawtooth(60.0, 50.0 * MIB, 45.0, 0.0, seed);
            let e = estimate(&trace, 5.0 * MIB).unwrap();
            // Naive regression over the raw samples would follow the sawtooth's phase; the floor
            // has no slope to speak of.
            assert!(e.slope.abs() < 0.02 * MIB / 60.0, "seed {seed}: slope {} B/s", e.slope);
        }
    }

    #[test]
    fn mann_kendall_is_exact_for_few_values_without_ties() {
        // 7 rising values: only the identity of 7! orders has S = 21.
        let up: Vec<f64> = (0..7).map(|i| i as f64).collect();
        assert!((1.0 - mann_kendall_confidence(&up) - 1.0 / 5040.0).abs() < 1e-12);
        // n = 4: S takes 6 (1 order), 4 (3), 2 (5), 0 (6), ...; P(S >= 2) = 9/24.
        assert!((exact_upper_tail(4, 2) - 9.0 / 24.0).abs() < 1e-12);
        assert!((exact_upper_tail(4, -6) - 1.0).abs() < 1e-12);
        // Every order of n = 5 counted once.
        let total: f64 = (0..=10).map(|k| exact_upper_tail(5, 10 - 2 * k) - exact_upper_tail(5, 12 - 2 * k)).sum();
        assert!((total - 1.0).abs() < 1e-12);
        // At n = 20, where the approximation takes over, both agree in the body of the
        // distribution.
        for s in [10i64, 40, 70] {
            let var = 20.0 * 19.0 * 45.0 / 18.0;
            let approx = normal_cdf((s as f64 - 1.0) / f64::sqrt(var));
            assert!((1.0 - exact_upper_tail(20, s) - approx).abs() < 0.01, "S = {s}");
        }
    }

    #[test]
    fn floors_are_the_lows_after_each_drop() {
        let series =
            [(0.0, 10.0), (1.0, 20.0), (2.0, 30.0), (3.0, 12.0), (4.0, 11.0), (5.0, 25.0), (6.0, 13.0), (7.0, 20.0)];
        assert_eq!(floor_points(&series, 5.0), vec![(4.0, 11.0), (6.0, 13.0)]);
        let rising = [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)];
        assert_eq!(floor_points(&rising, 5.0), rising.to_vec());
    }
}
