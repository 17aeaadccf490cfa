//! The agent's own wall: which fixes this machine allows at all, from the
//! `[policy]` table of `agent.toml`. The relay checks roles first; the
//! agent refuses what its policy forbids even if a relay asks — a
//! compromised or misconfigured relay cannot make it run more.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Built-in fixes allowed here (default: all of them).
    #[serde(default = "all_builtins")]
    pub fixes: Vec<String>,
    /// Whether `script NAME` may run admin scripts from `scripts_dir`.
    #[serde(default)]
    pub scripts: bool,
    /// Whether runbooks may run (their fixes still need the above).
    #[serde(default = "yes")]
    pub runbooks: bool,
}

fn all_builtins() -> Vec<String> {
    crate::fixes::BUILTIN
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn yes() -> bool {
    true
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fixes: all_builtins(),
            scripts: false,
            runbooks: true,
        }
    }
}

impl Policy {
    /// Ok, or why this agent refuses the fix.
    pub fn allows_fix(&self, action: &str) -> Result<(), String> {
        if action == "script" {
            return match self.scripts {
                true => Ok(()),
                false => Err("this agent's policy does not allow custom scripts ([policy] scripts = false in agent.toml)".into()),
            };
        }
        match self.fixes.iter().any(|f| f == action) {
            true => Ok(()),
            false => Err(format!("this agent's policy does not allow the fix `{action}` ([policy] fixes in agent.toml)")),
        }
    }

    pub fn allows_runbooks(&self) -> Result<(), String> {
        match self.runbooks {
            true => Ok(()),
            false => Err("this agent's policy does not allow runbooks ([policy] runbooks = false in agent.toml)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_builtins_not_scripts() {
        let p = Policy::default();
        assert!(p.allows_fix("flush-dns").is_ok());
        assert!(p
            .allows_fix("script")
            .unwrap_err()
            .contains("scripts = false"));
        assert!(p.allows_fix("format-disk").is_err());
        let narrow = Policy {
            fixes: vec!["clean-temp".into()],
            ..Policy::default()
        };
        assert!(narrow.allows_fix("restart-service").is_err());
    }
}
