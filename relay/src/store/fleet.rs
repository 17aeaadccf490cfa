//! Tags, facts and listings of the fleet, written once on the storage
//! primitives.
//!
//! * **Tags** come from the enrollment token (`token create --tag T`: kept
//!   with the token's id in the store, never in the token; copied to the
//!   agent as it enrolls, [`super::identity::enroll`]) and from admins
//!   (`agent tag NAME +T -T`, [`tag`]). They are of the names' alphabet,
//!   at most [`select::MAX_TAGS`] per agent ([`select::check_tags`]). An
//!   agent removed (its name freed) loses its tags with its record: enrolled
//!   again, it starts from its new token's.
//! * **Facts** (kernel, addresses, uptime) are what the agent reports on
//!   each connection, kept as reported with the time they were stored.
//! * **Listings** ([`select`]): what a selector can say in SQL (tags,
//!   name and OS globs: [`filter`]) is asked of the database, which also
//!   works out each agent's health from `monitor_status` and counts its
//!   open tickets — no agent is asked anything. The selector is then
//!   checked on every agent but for `online`, which only the relays know
//!   (their registries and the cluster's presence): the caller's to fill
//!   and check.

use super::error::{Missing, StoreError, StoreResult};
use super::tx::{AgentFilter, Tx};
use firstline_proto::select::{self, AgentView, Key, Selector};
use firstline_proto::AgentInfo;

/// What a selector can ask of the database: its name and OS globs and its
/// tags.
pub fn filter(sel: &Selector) -> AgentFilter {
    AgentFilter {
        names: sel.names().map(|g| g.pattern().to_string()).collect(),
        oses: sel
            .oses()
            .map(|g| g.pattern().to_ascii_lowercase())
            .collect(),
        tags: sel.tags().map(str::to_string).collect(),
    }
}

/// The agents `sel` picks, as far as the store can tell: every term held
/// but `online` ([`Key::Online`]), which the caller checks once it has
/// filled it in.
pub fn select(tx: &mut dyn Tx, sel: &Selector) -> StoreResult<Vec<AgentInfo>> {
    let rest = sel.without(Key::Online);
    let mut agents = tx.select_agents(&filter(sel))?;
    agents.retain(|a| rest.matches(&AgentView::from(a)));
    Ok(agents)
}

/// Add and remove an agent's tags; its tags after, sorted. `add` and
/// `remove` are checked first (each a tag, none in both, at most
/// [`select::MAX_TAGS`] after), so a refusal changes nothing.
pub fn tag(
    tx: &mut dyn Tx,
    agent: &str,
    add: &[String],
    remove: &[String],
) -> StoreResult<Vec<String>> {
    let invalid = |e: String| StoreError::Invalid(e);
    select::check_tags(add).map_err(invalid)?;
    // Removing a tag that is not one is harmless, but says a typo.
    for t in remove {
        select::check_tag(t).map_err(|e| invalid(format!("tag `{t}`: {e}")))?;
    }
    if let Some(both) = add.iter().find(|t| remove.contains(t)) {
        return Err(invalid(format!(
            "tag `{both}` is both added and removed: give +{both} or -{both}"
        )));
    }
    // Locks the agent's row (PostgreSQL) so two changes take turns.
    match tx.agent_state(agent)? {
        Some(s) if s.removed_at.is_none() => {}
        _ => return Err(StoreError::NotFound(Missing::Agent(agent.into()))),
    }
    let mut after = tx.agent_tags(agent)?;
    after.retain(|t| !remove.contains(t));
    for t in add {
        if !after.contains(t) {
            after.push(t.clone());
        }
    }
    if after.len() > select::MAX_TAGS {
        return Err(invalid(format!(
            "agent {agent} would carry {} tags: at most {}; remove some (-TAG)",
            after.len(),
            select::MAX_TAGS
        )));
    }
    tx.remove_agent_tags(agent, remove)?;
    tx.add_agent_tags(agent, add)?;
    after.sort();
    Ok(after)
}

/// Tags as given on a command line: each checked, duplicates dropped,
/// sorted.
pub fn tidy_tags(tags: &[String]) -> Result<Vec<String>, String> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    select::check_tags(&tags)?;
    Ok(tags)
}
