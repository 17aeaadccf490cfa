//! A real Nagios-style plugin the tests drive: `check_state NAME` exits
//! with the number in `state-NAME` (0 ok, 2 crit…; 3 unknown when the file
//! is missing). With a file `flap-NAME` it flips ok ↔ crit on every run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The plugins folder holding `check_state`.
pub struct StatePlugin {
    pub dir: PathBuf,
    /// Where its state files are (written by the tests and the plugin).
    pub state: PathBuf,
}

impl StatePlugin {
    /// The `[policy]` table that lets an agent run `check_state` (plugins
    /// run only from the agent's allow-list) and lets it keep its state
    /// (plugins see the file system read-only but for
    /// `plugin_write_paths`).
    pub fn policy() -> String {
        StatePlugin::policy_with(&[])
    }

    /// The same, with more plugins allowed.
    pub fn policy_with(more: &[&str]) -> String {
        let names: Vec<String> = std::iter::once("check_state")
            .chain(more.iter().copied())
            .map(|n| format!("\"{n}\""))
            .collect();
        format!(
            "[policy]\nplugins = [{}]\nplugin_write_paths = [\"{}\"]\n",
            names.join(", "),
            std::env::temp_dir().display()
        )
    }

    pub fn new(root: &Path) -> StatePlugin {
        let dir = root.join("plugins");
        std::fs::create_dir_all(&dir).expect("plugins dir");
        // The state, in a folder the plugin's unprivileged user may write.
        let state = root.join("plugin-state");
        std::fs::create_dir_all(&state).expect("plugin state dir");
        let script = dir.join("check_state");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nstate=$(cat {0}/state-$1 2>/dev/null || echo 3)\n\
                 if [ -f {0}/flap-$1 ]; then if [ \"$state\" = 0 ]; then echo 2 > {0}/state-$1; else echo 0 > {0}/state-$1; fi; fi\n\
                 echo \"STATE $state: $1 | state=$state;1;2\"\nexit $state\n",
                state.display()
            ),
        )
        .expect("write plugin");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Readable by every user: the agent runs plugins unprivileged.
        for d in [root, dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        StatePlugin { dir, state }
    }

    pub fn set(&self, name: &str, state: u8) {
        let file = self.state.join(format!("state-{name}"));
        std::fs::write(&file, format!("{state}\n")).expect("write state");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    }

    /// From now on `name` alternates crit / ok.
    pub fn flap(&self, name: &str) {
        std::fs::write(self.state.join(format!("flap-{name}")), "").expect("write flap");
    }
}
