//! Protocol version negotiation.
//!
//! Each side announces the range it speaks (`min..=max`) in its `Hello`; the
//! highest version both understand wins, so an old agent keeps talking to a
//! newer relay as long as the ranges overlap.

/// Newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Oldest protocol version this build still accepts.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// The highest version inside both ranges, or `None` when they do not overlap.
pub fn negotiate(ours: (u16, u16), theirs: (u16, u16)) -> Option<u16> {
    let low = ours.0.max(theirs.0);
    let high = ours.1.min(theirs.1);
    (low <= high).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common() {
        assert_eq!(negotiate((1, 3), (2, 5)), Some(3));
        assert_eq!(negotiate((1, 1), (1, 1)), Some(1));
    }

    #[test]
    fn disjoint_ranges_fail() {
        assert_eq!(negotiate((1, 1), (2, 4)), None);
        assert_eq!(negotiate((3, 4), (1, 2)), None);
    }
}
