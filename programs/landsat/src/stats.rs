//! Order statistics used for contrast stretches and scene-adaptive thresholds.

/// The `p`-th percentile (0–100) of `values`, interpolating linearly between
/// the two nearest ranks (NumPy's default definition). Sorts `values` in
/// place. `None` when `values` is empty or `p` is outside 0–100; NaNs sort
/// last (IEEE total order), so they only matter if they make up the tail.
pub fn percentile(values: &mut [f32], p: f64) -> Option<f32> {
    if values.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    values.sort_unstable_by(f32::total_cmp);
    let rank = p / 100.0 * (values.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    let fraction = (rank - below as f64) as f32;
    Some(values[below] + (values[above] - values[below]) * fraction)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn matches_numpy_linear_interpolation() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 82.5, 100]) = 1, 1.75, 2.5, 3.475, 4
        let mut values = [4.0, 1.0, 3.0, 2.0];
        for (p, expected) in [
            (0.0, 1.0),
            (25.0, 1.75),
            (50.0, 2.5),
            (82.5, 3.475),
            (100.0, 4.0),
        ] {
            let got = percentile(&mut values, p).unwrap();
            assert!((got - expected).abs() < 1e-6, "p{p}: {got} != {expected}");
        }
        assert_eq!(percentile(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [1.0], 101.0), None);
    }
}
