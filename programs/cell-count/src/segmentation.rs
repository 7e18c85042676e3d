//! Thresholding and connected-component labelling.

/// Otsu's threshold (Otsu 1979) of `values` over a 256-bin histogram spanning
/// their range: the bin boundary maximising the between-class variance.
/// `None` when there are no values or they are all equal.
pub fn otsu_threshold(values: &[f32]) -> Option<f32> {
    let (min, max) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    // Also catches an empty slice (min = +inf) and NaN-only input.
    if max.partial_cmp(&min) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    const BINS: usize = 256;
    let width = (max - min) / BINS as f32;
    let mut histogram = [0u64; BINS];
    for &v in values {
        let bin = (((v - min) / width) as usize).min(BINS - 1);
        histogram[bin] += 1;
    }
    let total = values.len() as f64;
    let centre = |bin: usize| f64::from(min) + (bin as f64 + 0.5) * f64::from(width);
    let total_sum: f64 = histogram
        .iter()
        .enumerate()
        .map(|(b, &n)| n as f64 * centre(b))
        .sum();
    let (mut below_count, mut below_sum) = (0.0, 0.0);
    let mut best = (f64::NEG_INFINITY, 0usize);
    for (bin, &count) in histogram.iter().enumerate().take(BINS - 1) {
        below_count += count as f64;
        below_sum += count as f64 * centre(bin);
        let above_count = total - below_count;
        if below_count == 0.0 || above_count == 0.0 {
            continue;
        }
        let mean_difference = below_sum / below_count - (total_sum - below_sum) / above_count;
        let between = below_count * above_count * mean_difference * mean_difference;
        if between > best.0 {
            best = (between, bin);
        }
    }
    // Pixels strictly above the upper edge of the best "below" bin are foreground.
    Some(min + (best.1 + 1) as f32 * width)
}

/// 3×3 box mean with edge replication: light smoothing so single noisy
/// pixels do not split or speckle nuclei.
pub fn box_mean_3x3(values: &[f32], width: usize, height: usize) -> Vec<f32> {
    let at = |x: isize, y: isize| {
        let x = x.clamp(0, width as isize - 1) as usize;
        let y = y.clamp(0, height as isize - 1) as usize;
        values[y * width + x]
    };
    let mut smoothed = Vec::with_capacity(values.len());
    for y in 0..height as isize {
        for x in 0..width as isize {
            let mut sum = 0.0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    sum += at(x + dx, y + dy);
                }
            }
            smoothed.push(sum / 9.0);
        }
    }
    smoothed
}

/// One connected component.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Label, 1-based, in raster order of each component's first pixel.
    pub label: u32,
    /// Pixels in the component.
    pub area: usize,
    /// Mean column and row of its pixels.
    pub centroid: (f64, f64),
}

/// Labels the 8-connected components of `foreground` that have at least
/// `min_area` pixels. Returns a label per pixel (0 = background or dropped)
/// and the kept components, labelled 1.. in raster order.
pub fn label_components(
    foreground: &[bool],
    width: usize,
    height: usize,
    min_area: usize,
) -> (Vec<u32>, Vec<Component>) {
    let mut labels = vec![0u32; foreground.len()];
    let mut components = Vec::new();
    let mut stack = Vec::new();
    let mut members = Vec::new();
    for start in 0..foreground.len() {
        if !foreground[start] || labels[start] != 0 {
            continue;
        }
        // Flood fill with an explicit stack (no recursion: components can be
        // large). Pixels get a provisional marker until the area is known.
        members.clear();
        labels[start] = u32::MAX;
        stack.push(start);
        while let Some(pixel) = stack.pop() {
            members.push(pixel);
            let (x, y) = ((pixel % width) as isize, (pixel / width) as isize);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize {
                        continue;
                    }
                    let neighbour = ny as usize * width + nx as usize;
                    if foreground[neighbour] && labels[neighbour] == 0 {
                        labels[neighbour] = u32::MAX;
                        stack.push(neighbour);
                    }
                }
            }
        }
        let keep = members.len() >= min_area;
        let label = if keep { components.len() as u32 + 1 } else { 0 };
        // Dropped components keep a non-zero marker so they are not revisited,
        // then are cleared below.
        let marker = if keep { label } else { u32::MAX };
        let (mut sum_x, mut sum_y) = (0.0, 0.0);
        for &pixel in &members {
            labels[pixel] = marker;
            sum_x += (pixel % width) as f64;
            sum_y += (pixel / width) as f64;
        }
        if keep {
            let area = members.len();
            components.push(Component {
                label,
                area,
                centroid: (sum_x / area as f64, sum_y / area as f64),
            });
        }
    }
    for label in &mut labels {
        if *label == u32::MAX {
            *label = 0;
        }
    }
    (labels, components)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_splits_two_clusters() {
        let mut values = vec![1.0f32; 100];
        values.extend(vec![9.0f32; 50]);
        let threshold = otsu_threshold(&values).unwrap();
        assert!(threshold > 1.0 && threshold < 9.0, "{threshold}");
        assert_eq!(otsu_threshold(&[3.0, 3.0]), None);
        assert_eq!(otsu_threshold(&[]), None);
    }

    #[test]
    fn labels_diagonal_neighbours_together_and_drops_small_ones() {
        #[rustfmt::skip]
        let image = [
            1, 0, 0, 0, 1,
            0, 1, 0, 0, 0,
            0, 0, 0, 1, 1,
            0, 0, 0, 1, 0,
        ];
        let foreground: Vec<bool> = image.iter().map(|&v| v == 1).collect();
        let (labels, components) = label_components(&foreground, 5, 4, 2);
        assert_eq!(components.len(), 2);
        assert_eq!((components[0].label, components[0].area), (1, 2)); // diagonal pair
        assert_eq!((components[1].label, components[1].area), (2, 3));
        assert_eq!(
            components[1].centroid,
            ((3.0 + 4.0 + 3.0) / 3.0, (2.0 + 2.0 + 3.0) / 3.0)
        );
        assert_eq!(labels[4], 0, "the single pixel is below min_area");
        assert_eq!(labels[6], 1);
        assert_eq!(labels[18], 2);
    }

    #[test]
    fn box_mean_preserves_constant_images() {
        assert_eq!(box_mean_3x3(&[2.0; 6], 3, 2), vec![2.0; 6]);
    }
}
