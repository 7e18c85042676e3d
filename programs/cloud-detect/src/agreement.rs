//! Pixel-wise agreement of a binary mask with a reference mask.

use serde::Serialize;

/// Confusion counts and the scores derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agreement {
    /// Flagged in both.
    pub true_positive: u64,
    /// Flagged only in the mask under test.
    pub false_positive: u64,
    /// Flagged only in the reference.
    pub false_negative: u64,
    /// Flagged in neither.
    pub true_negative: u64,
    /// Share of compared pixels where both agree.
    pub accuracy: f64,
    /// Intersection over union of the flagged sets (Jaccard index).
    pub iou: f64,
    /// Share of the mask's flagged pixels that the reference also flags.
    pub precision: f64,
    /// Share of the reference's flagged pixels that the mask also flags.
    pub recall: f64,
}

/// Compares `mask` with `reference` over the pixels where `ignore` is false.
/// A score whose denominator is zero (e.g. precision of an empty mask) is 1
/// when the other side is empty too and 0 otherwise, so perfect agreement on
/// a cloudless scene scores 1.
pub fn agreement(mask: &[bool], reference: &[bool], ignore: &[bool]) -> Agreement {
    let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for ((&m, &r), &skip) in mask.iter().zip(reference).zip(ignore) {
        if skip {
            continue;
        }
        match (m, r) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    let ratio = |numerator: u64, denominator: u64| {
        if denominator == 0 {
            1.0
        } else {
            numerator as f64 / denominator as f64
        }
    };
    Agreement {
        true_positive: tp,
        false_positive: fp,
        false_negative: fn_,
        true_negative: tn,
        accuracy: ratio(tp + tn, tp + fp + fn_ + tn),
        iou: ratio(tp, tp + fp + fn_),
        precision: if tp + fp == 0 {
            ratio(0, fn_)
        } else {
            ratio(tp, tp + fp)
        },
        recall: if tp + fn_ == 0 {
            ratio(0, fp)
        } else {
            ratio(tp, tp + fn_)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_scores_of_a_small_case() {
        let mask = [true, true, false, false, true, false];
        let reference = [true, false, true, false, true, true];
        let ignore = [false, false, false, false, false, true];
        let a = agreement(&mask, &reference, &ignore);
        assert_eq!(
            (
                a.true_positive,
                a.false_positive,
                a.false_negative,
                a.true_negative
            ),
            (2, 1, 1, 1)
        );
        assert!((a.accuracy - 3.0 / 5.0).abs() < 1e-12);
        assert!((a.iou - 2.0 / 4.0).abs() < 1e-12);
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((a.recall - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn empty_masks_agree_perfectly_and_disagreement_scores_zero() {
        let none = [false; 4];
        let perfect = agreement(&none, &none, &none);
        assert_eq!(
            (
                perfect.accuracy,
                perfect.iou,
                perfect.precision,
                perfect.recall
            ),
            (1.0, 1.0, 1.0, 1.0)
        );
        let some = [true, false, false, false];
        let missed = agreement(&none, &some, &none);
        assert_eq!(
            (missed.iou, missed.precision, missed.recall),
            (0.0, 0.0, 0.0)
        );
    }
}
