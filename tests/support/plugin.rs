//! A real Nagios-style plugin the tests drive: `check_state NAME` exits
//! with the number in `state-NAME` (0 ok, 2 crit…; 3 unknown when the file
//! is missing). With a file `flap-NAME` it flips ok ↔ crit on every run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The plugins folder holding `check_state`.
pub struct StatePlugin {
    pub dir: PathBuf,
}

impl StatePlugin {
    /// The `[policy]` table that lets an agent run `check_state` (plugins
    /// run only from the agent's allow-list).
    pub const POLICY: &'static str = "[policy]\nplugins = [\"check_state\"]\n";

    pub fn new(root: &Path) -> StatePlugin {
        let dir = root.join("plugins");
        std::fs::create_dir_all(&dir).expect("plugins dir");
        let script = dir.join("check_state");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nstate=$(cat {0}/state-$1 2>/dev/null || echo 3)\n\
                 if [ -f {0}/flap-$1 ]; then if [ \"$state\" = 0 ]; then echo 2 > {0}/state-$1; else echo 0 > {0}/state-$1; fi; fi\n\
                 echo \"STATE $state: $1 | state=$state;1;2\"\nexit $state\n",
                dir.display()
            ),
        )
        .expect("write plugin");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Readable by every user: the agent may run plugins unprivileged.
        for d in [root, dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        StatePlugin { dir }
    }

    pub fn set(&self, name: &str, state: u8) {
        std::fs::write(self.dir.join(format!("state-{name}")), format!("{state}\n"))
            .expect("write state");
    }

    /// From now on `name` alternates crit / ok.
    pub fn flap(&self, name: &str) {
        std::fs::write(self.dir.join(format!("flap-{name}")), "").expect("write flap");
    }
}
