//! Versioned migrations: each backend keeps an ordered list of
//! [`Migration`]s (version 1, 2, 3…; never edited once released, only
//! appended to) and applies, at open, those above the version recorded in
//! its `schema_version` table — each in one transaction with the row that
//! records it, so a crash leaves a database at one version or the next,
//! and two relays opening it at once apply each migration once.
//!
//! A database newer than the relay (a version above the last it knows) is
//! refused: an older relay must not write into a schema it does not know.
//!
//! What a step is depends on the backend (SQL text, or a function that can
//! look at the database first, as SQLite's first migration must to adopt
//! the databases made before versions existed).

use super::error::StoreError;

/// One step of a backend's schema history.
pub struct Migration<S> {
    pub version: u32,
    /// What it does, one line (recorded with the version).
    pub name: &'static str,
    pub apply: S,
}

/// The migrations of `list` still to apply to a database at `current`.
pub fn pending<S>(list: &[Migration<S>], current: u32) -> Result<&[Migration<S>], StoreError> {
    let latest = list.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(StoreError::Unavailable(format!(
            "the database's schema is version {current}, newer than this relay knows ({latest}): \
             run a newer firstline-relay"
        )));
    }
    let from = list.partition_point(|m| m.version <= current);
    Ok(&list[from..])
}

/// Versions must be 1, 2, 3… with no gap or repeat (checked by each
/// backend's tests).
pub fn check<S>(list: &[Migration<S>]) -> Result<(), String> {
    for (i, m) in list.iter().enumerate() {
        if m.version as usize != i + 1 {
            return Err(format!(
                "migration `{}` has version {}, expected {}",
                m.name,
                m.version,
                i + 1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Vec<Migration<()>> {
        (1..=3)
            .map(|version| Migration {
                version,
                name: "m",
                apply: (),
            })
            .collect()
    }

    #[test]
    fn pending_are_those_above_the_current_version() {
        let l = list();
        assert!(check(&l).is_ok());
        assert_eq!(pending(&l, 0).unwrap().len(), 3);
        assert_eq!(pending(&l, 2).unwrap()[0].version, 3);
        assert!(pending(&l, 3).unwrap().is_empty());
        let newer = pending(&l, 4).err().unwrap().to_string();
        assert!(
            newer.contains("version 4, newer than this relay knows (3)"),
            "{newer}"
        );
        let mut gap = list();
        gap.remove(1);
        assert!(check(&gap).is_err());
    }
}
