//! Decoding of the pre-collection Landsat 8 `BQA` quality band.
//!
//! Bit layout (USGS, Landsat 8 pre-collection Level-1 Quality Assessment):
//! bit 0 designated fill, bits 10–11 snow/ice, 12–13 cirrus, 14–15 cloud;
//! each two-bit field is a confidence 0 (not determined) to 3 (high, 67–100 %).

/// A two-bit confidence field of the BQA band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confidence {
    /// 0: the algorithm did not determine the condition.
    NotDetermined,
    /// 1: 0–33 % confidence that the condition exists.
    Low,
    /// 2: 34–66 %.
    Medium,
    /// 3: 67–100 %.
    High,
}

impl Confidence {
    fn from_bits(bits: u16) -> Confidence {
        match bits & 0b11 {
            0 => Confidence::NotDetermined,
            1 => Confidence::Low,
            2 => Confidence::Medium,
            _ => Confidence::High,
        }
    }
}

/// One pixel of the BQA band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityFlags(pub u16);

impl QualityFlags {
    /// Bit 0: the pixel lies outside the imaged area.
    pub fn is_fill(self) -> bool {
        self.0 & 1 == 1
    }

    /// Bits 14–15: USGS's cloud confidence.
    pub fn cloud(self) -> Confidence {
        Confidence::from_bits(self.0 >> 14)
    }

    /// Bits 12–13: USGS's cirrus confidence.
    pub fn cirrus(self) -> Confidence {
        Confidence::from_bits(self.0 >> 12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_fields_of_real_bqa_values() {
        // 0xf000 and 0x5020 are the commonest values of the sample scene's BQA.
        let cloudy = QualityFlags(0xf000);
        assert_eq!(cloudy.cloud(), Confidence::High);
        assert_eq!(cloudy.cirrus(), Confidence::High);
        assert!(!cloudy.is_fill());
        let clear = QualityFlags(0x5020);
        assert_eq!(clear.cloud(), Confidence::Low);
        assert_eq!(clear.cirrus(), Confidence::Low);
        assert!(QualityFlags(1).is_fill());
        assert_eq!(QualityFlags(0x9000).cloud(), Confidence::Medium);
        assert_eq!(QualityFlags(0).cloud(), Confidence::NotDetermined);
    }
}
