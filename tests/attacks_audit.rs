//! The audit log against someone who holds the relay's database but not its
//! folder (issue 10, finding 9), end to end with real processes: the chain
//! is anchored by signed checkpoints outside the database, so deleting the
//! newest entries, or editing one and recomputing every hash after it, no
//! longer passes `firstline-relay audit verify`; and the offline admin
//! commands, run while `serve` writes the same chain, are audited too.
//!
//! Issue 24: the chain's hashes are keyed (HMAC-SHA-256 under a key derived
//! from the relay's audit key, which the database does not hold): a row
//! added in the database with a recomputed plain SHA-256 hash stops the
//! relay's audited actions (refused, logged, `/metrics`) until an admin
//! acknowledges it, and `audit verify` fails on it; an emptied anchor, a
//! cut one and a replayed anchor line fail `audit verify` too.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use firstline_tests::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn verify(config: &Path) -> Output {
    run(Command::new(bin("firstline-relay"))
        .args(["audit", "verify", "--config"])
        .arg(config))
}

fn rows(dir: &Path) -> i64 {
    let db = rusqlite::Connection::open(dir.join("relay.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap()
}

/// The newest entry the anchor's checkpoints name (one checkpoint covers
/// every entry before it).
fn checkpoints(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join("audit-anchor.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("v2 "))
        .filter_map(|l| l.split(' ').nth(2)?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// The relay writes an entry's checkpoint just after its commit: wait for
/// every entry to be covered.
fn settle(dir: &Path) {
    let settled = wait_until(Duration::from_secs(10), || rows(dir) == checkpoints(dir));
    assert!(
        settled,
        "{} entries, {} checkpoints",
        rows(dir),
        checkpoints(dir)
    );
}

/// A copy of a stopped relay's folder (its paths are relative to
/// relay.toml): the config path of the copy.
fn copy_relay(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    to.join("relay.toml")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The chain's hash, as the attacker knows it from the source: SHA-256 of
/// the previous hash and a JSON array of the row's fields. No key.
#[allow(clippy::too_many_arguments)]
fn chain_hash(
    prev: &str,
    id: i64,
    at: i64,
    who: &str,
    role: Option<&str>,
    agent: Option<&str>,
    action: &str,
    args: &str,
    outcome: &str,
) -> String {
    let fields = serde_json::json!([id, at, who, role, agent, action, args, outcome]);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(fields.to_string().as_bytes());
    hex::encode(ctx.finish())
}

type Row = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
);

/// Edit entry `id`'s outcome, then recompute the whole chain after it.
fn rewrite(db: &rusqlite::Connection, id: i64, outcome: &str) {
    db.execute(
        "UPDATE audit SET outcome = ?2 WHERE id = ?1",
        rusqlite::params![id, outcome],
    )
    .unwrap();
    let mut prev: String = db
        .query_row("SELECT prev_hash FROM audit WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    let rows: Vec<Row> = db
        .prepare(
            "SELECT id, at, who, role, agent, action, args, outcome FROM audit
             WHERE id >= ?1 ORDER BY id",
        )
        .unwrap()
        .query_map([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, at, who, role, agent, action, args, outcome) in rows {
        let hash = chain_hash(
            &prev,
            id,
            at,
            &who,
            role.as_deref(),
            agent.as_deref(),
            &action,
            &args,
            &outcome,
        );
        db.execute(
            "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE id = ?1",
            rusqlite::params![id, prev, hash],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn verify_tells_truncation_and_rewriting_from_an_untouched_log() {
    let mut s = Setup::new("technician");
    for _ in 0..3 {
        let out = s.console.run(&["run", "pc1", "disk", "/"]);
        assert!(out.status.code().is_some(), "{}", text(&out));
    }
    let out = s.console.run(&["fix", "pc1", "flush-dns", "--dry-run"]);
    assert!(out.status.code().is_some(), "{}", text(&out));
    let dir = s.relay.dir.clone();
    settle(&dir);
    let live = s.relay.cmd(&["audit", "verify"]);
    assert!(live.status.success(), "{}", text(&live));
    s.relay.kill();
    assert_eq!(mode(&dir.join("audit-key.pk8")), 0o600);
    assert_eq!(mode(&dir.join("audit-anchor.log")), 0o600);

    // (c) Untouched: holds, every entry anchored.
    let untouched = copy_relay(&dir, &s.root().join("untouched"));
    let n = rows(&dir);
    assert!(n >= 8, "{n} entries");
    let out = verify(&untouched);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains(&format!("holds: {n} entries")), "{said}");
    assert!(said.contains(&format!("{n} anchored")), "{said}");
    assert!(!stderr(&out).contains("warning"), "{}", text(&out));

    // (a) The newest three rows deleted: the chain that is left is whole,
    // but the anchor knows there were more.
    let cut = copy_relay(&dir, &s.root().join("cut"));
    let db = rusqlite::Connection::open(cut.with_file_name("relay.db")).unwrap();
    let newest: i64 = db
        .query_row("SELECT MAX(id) FROM audit", [], |r| r.get(0))
        .unwrap();
    db.execute("DELETE FROM audit WHERE id > ?1", [newest - 3])
        .unwrap();
    drop(db);
    let out = verify(&cut);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let want = format!("entries {}..{newest} were deleted (truncated)", newest - 2);
    assert!(
        stderr(&out).contains(&want),
        "want `{want}`\n{}",
        text(&out)
    );

    // (b) A technician's entry edited and the chain recomputed after it:
    // every row matches its hash, but not the signed checkpoints.
    let forged = copy_relay(&dir, &s.root().join("forged"));
    let db = rusqlite::Connection::open(forged.with_file_name("relay.db")).unwrap();
    let id: i64 = db
        .query_row(
            "SELECT MIN(id) FROM audit WHERE who = 'tech' AND action LIKE 'run check disk%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    rewrite(&db, id, "ok: nothing was run");
    drop(db);
    let out = verify(&forged);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let want = format!("entry {id} was rewritten (its hash differs from the signed checkpoint)");
    assert!(
        stderr(&out).contains(&want),
        "want `{want}`\n{}",
        text(&out)
    );
    assert!(
        !stderr(&out).contains("edited"),
        "the forger recomputed the chain: no row fails its own hash\n{}",
        text(&out)
    );

    // (d) The anchor gone, while the database has entries.
    let unanchored = copy_relay(&dir, &s.root().join("no-anchor"));
    std::fs::remove_file(unanchored.with_file_name("audit-anchor.log")).unwrap();
    let out = verify(&unanchored);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("audit-anchor.log is missing"),
        "{}",
        text(&out)
    );
}

#[test]
fn offline_admin_commands_are_audited_and_share_one_chain_with_serve() {
    let s = Setup::new("technician");
    // Four `token create` processes and console requests served by `serve`,
    // all appending to the same chain at once.
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let creators: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| s.relay.token(&["--uses", "2", "--ttl", "1h"])))
            .collect();
        for _ in 0..2 {
            let out = s.console.run(&["run", "pc1", "disk", "/"]);
            assert!(out.status.code().is_some(), "{}", text(&out));
        }
        creators.into_iter().map(|c| c.join().unwrap()).collect()
    });
    s.relay.operator("tina", "viewer");
    let out = s.relay.cmd(&["agent", "revoke", "pc1"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.relay.cmd(&["agent", "revoke", "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = s.console.run(&["audit", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by = |action: &str| -> Vec<&Value> {
        entries.iter().filter(|e| e["action"] == action).collect()
    };
    let admin = |e: &Value| {
        e["who"].as_str().unwrap().starts_with("admin (local user ") && e["role"].is_null()
    };

    let init = by("init");
    assert_eq!(init.len(), 1, "{entries:#?}");
    assert!(admin(init[0]) && init[0]["outcome"] == "ok", "{}", init[0]);

    let created = by("token create");
    assert_eq!(
        created.len(),
        5,
        "Setup's token and these four: {created:#?}"
    );
    for token in &tokens {
        let parts: Vec<&str> = token.split('.').collect();
        let (id, secret) = (parts[1], parts[2]);
        let entry = created
            .iter()
            .find(|e| e["args"].as_str().unwrap().contains(id))
            .unwrap_or_else(|| panic!("token {id} not audited: {created:#?}"));
        assert!(admin(entry), "{entry}");
        assert!(
            entry["args"]
                .as_str()
                .unwrap()
                .contains("--uses 2 --ttl 1h"),
            "{entry}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(secret),
            "a token's secret is never audited"
        );
    }

    let added = by("operator add");
    for (name, role) in [("tech", "technician"), ("tina", "viewer")] {
        let entry = added
            .iter()
            .find(|e| e["args"] == format!("{name} --role {role}").as_str())
            .unwrap_or_else(|| panic!("operator add {name} not audited: {added:#?}"));
        assert!(admin(entry), "{entry}");
        assert!(
            entry["outcome"].as_str().unwrap().starts_with("ok"),
            "{entry}"
        );
    }

    let revoked = by("agent revoke");
    assert_eq!(revoked.len(), 2, "{revoked:#?}");
    assert!(admin(revoked[0]), "{}", revoked[0]);
    assert_eq!(revoked[0]["agent"], "pc1");
    assert_eq!(revoked[0]["outcome"], "ok");
    assert_eq!(revoked[1]["agent"], "ghost");
    assert!(
        revoked[1]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("error: no agent named `ghost`"),
        "{}",
        revoked[1]
    );

    // One chain, no fork, every entry anchored.
    settle(&s.relay.dir);
    let out = s.relay.cmd(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!stderr(&out).contains("warning"), "{}", text(&out));
    let ids: Vec<u64> = entries.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
}

/// A free TCP port on 127.0.0.1 (closed again; the relay binds it soon).
fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `/metrics` of a relay, as text.
fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// Append a row to the chain as someone with only the database would:
/// linked to the head, with the plain SHA-256 chain hash recomputed.
fn forge_row(db: &Path, who: &str, action: &str) -> i64 {
    let db = rusqlite::Connection::open(db).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let (head, prev): (i64, String) = db
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let id = head + 1;
    let hash = chain_hash(&prev, id, 0, who, Some("admin"), None, action, "", "ok");
    db.execute(
        "INSERT INTO audit (id, at, who, role, agent, action, args, outcome, prev_hash, hash)
         VALUES (?1, 0, ?2, 'admin', NULL, ?3, '', 'ok', ?4, ?5)",
        rusqlite::params![id, who, action, prev, hash],
    )
    .unwrap();
    id
}

/// A row forged in the live relay's database: the relay's next audited
/// action is refused (and it says why, in its log and `/metrics`),
/// `audit verify` fails naming the row; after `audit acknowledge` the
/// relay serves again and `audit verify` holds, reporting the row.
#[test]
fn a_forged_row_stops_audited_actions_until_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    let port = free_tcp_port();
    relay.configure(&format!("metrics_listen = \"127.0.0.1:{port}\""));
    relay.serve();
    let credential = relay.operator("tina", "admin");
    let console = Console::new(tmp.path());
    console.login(&credential);
    let ok = console.run(&["tickets"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(metrics(port).contains("firstline_audit_chain_tampered 0"));
    settle(&relay.dir);

    let forged = forge_row(&relay.dir.join("relay.db"), "mallory", "token create");
    // Refused before anything is done; the next one too.
    for _ in 0..2 {
        let out = console.run(&["ticket", "new", "printer down"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            stderr(&out).contains("refuses audited actions")
                && stderr(&out).contains(&format!("entry {forged} carries no valid keyed hash")),
            "{}",
            text(&out)
        );
    }
    let listed = console.run(&["tickets", "--json"]);
    assert_eq!(listed.status.code(), Some(1), "{}", text(&listed));
    let tickets = rusqlite::Connection::open(relay.dir.join("relay.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(tickets, 0, "nothing was done");
    assert!(
        relay.log().contains("AUDIT CHAIN TAMPERED WITH"),
        "{}",
        relay.log()
    );
    let m = metrics(port);
    assert!(m.contains("firstline_audit_chain_tampered 1"), "{m}");
    assert!(m.contains("firstline_audit_tamper_detected_total 1"), "{m}");
    let out = relay.cmd(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("entry {forged} carries no keyed hash")),
        "{}",
        text(&out)
    );
    assert_eq!(
        rows(&relay.dir),
        forged,
        "nothing appended after the forged row"
    );

    // No certificate is issued either (the token is made offline: the
    // command warns that it was not audited).
    let token = relay.token(&[]);
    let agent = Agent::new(tmp.path(), "pc9");
    let out = agent.enroll(&relay.addr, &token);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("refuses audited actions"),
        "{}",
        text(&out)
    );
    let enrolled = rusqlite::Connection::open(relay.dir.join("relay.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM agents WHERE name = 'pc9'", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(enrolled, 0, "no agent enrolled");

    // The admin acknowledges: the relay serves again.
    let out = relay.cmd(&["audit", "acknowledge"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("entries {forged}:")),
        "{}",
        text(&out)
    );
    let out = console.run(&["ticket", "new", "printer down"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(metrics(port).contains("firstline_audit_chain_tampered 0"));
    let out = agent.enroll(&relay.addr, &relay.token(&[]));
    assert!(out.status.success(), "{}", text(&out));
    settle(&relay.dir);
    let out = relay.cmd(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: entry {forged} was not written by a relay; acknowledged by an operator in entry {}",
            forged + 1
        )),
        "{}",
        text(&out)
    );
    // A second forgery is caught again.
    let again = forge_row(&relay.dir.join("relay.db"), "mallory", "operator add");
    let out = console.run(&["tickets"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(metrics(port).contains("firstline_audit_tamper_detected_total 2"));
    let out = relay.cmd(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains(&format!("entry {again} carries no keyed hash")));
}

/// The anchor emptied (and the relay writing on), cut in the middle, or
/// given a replayed line: `audit verify` fails each time.
#[test]
fn an_emptied_cut_or_replayed_anchor_fails_verify() {
    let mut s = Setup::new("technician");
    for _ in 0..3 {
        let out = s.console.run(&["tickets"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let dir = s.relay.dir.clone();
    settle(&dir);
    s.relay.kill();
    let anchor = std::fs::read_to_string(dir.join("audit-anchor.log")).unwrap();
    let lines: Vec<&str> = anchor.lines().collect();
    assert!(lines.len() >= 4, "{anchor}");

    // Emptied: nothing checkpoints the entries.
    let emptied = copy_relay(&dir, &s.root().join("emptied"));
    std::fs::write(emptied.with_file_name("audit-anchor.log"), "").unwrap();
    let out = verify(&emptied);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("it was emptied"), "{}", text(&out));
    // And the relay's next entry (an offline command) starts a new anchor:
    // still told.
    let out = run(Command::new(bin("firstline-relay"))
        .args(["token", "create", "--config"])
        .arg(&emptied));
    assert!(out.status.success(), "{}", text(&out));
    let out = verify(&emptied);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("the anchor was emptied or cut at its start"),
        "{}",
        text(&out)
    );

    // Cut in the middle: a line removed.
    let cut = copy_relay(&dir, &s.root().join("cut-anchor"));
    let mut kept = lines.clone();
    kept.remove(1);
    std::fs::write(
        cut.with_file_name("audit-anchor.log"),
        kept.join("\n") + "\n",
    )
    .unwrap();
    let out = verify(&cut);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("lines between were removed (cut)"),
        "{}",
        text(&out)
    );

    // A replayed line (a copy of an earlier one, appended).
    let replayed = copy_relay(&dir, &s.root().join("replayed"));
    std::fs::write(
        replayed.with_file_name("audit-anchor.log"),
        format!("{anchor}{}\n", lines[1]),
    )
    .unwrap();
    let out = verify(&replayed);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("repeats sequence number 2 (a replayed line)"),
        "{}",
        text(&out)
    );

    // The untouched folder still holds (the controls above differ only in
    // what was done to them).
    let out = verify(&copy_relay(&dir, &s.root().join("untouched")));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
