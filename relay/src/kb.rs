//! The knowledge base: Markdown articles in the relay's `kb/` folder
//! (`kb_dir` in relay.toml, default `kb` beside it), which runbook verdicts
//! name (`kb = "printing-needs-attention"`) and technicians and end users
//! read (`kb_search`, `kb_show`; `firstline-help` over the agent's link).
//!
//! Why files and not the store: admins write and review articles as text,
//! in their own editor and version control, and every relay of a
//! deployment can be given the same folder. The relay only reads them.
//!
//! **Format.** `ID.md`: an optional front matter between `---` lines with
//! `id:` (default: the file stem), `title:` and `tags:` (comma-separated);
//! without a `title:`, the first `# ` heading is the title. The rest is the
//! body, Markdown shown as text (never rendered as HTML here).
//!
//! **Bounded.** At most [`MAX_ARTICLES`] files of at most
//! [`MAX_ARTICLE_BYTES`] each are read; a bad file is skipped and logged
//! as `FILE:LINE: why`. The folder is read again only when its listing
//! (names, sizes, modification times) changed since the last request
//! ([`current`]), so an edited article is seen at the next request and an
//! unchanged folder costs one directory listing.
//!
//! **Shipped articles** ([`SHIPPED`], embedded from `relay/kb/`) cover
//! every `kb` id the shipped runbooks name; `firstline-relay init` writes
//! them into the new relay's folder ([`install_shipped`]).

use firstline_proto::kb::{valid_id, KbArticle, KbHit};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Articles read at most (the rest are skipped, with a log line).
pub const MAX_ARTICLES: usize = 1000;
/// Largest article file, in bytes.
pub const MAX_ARTICLE_BYTES: u64 = 64 * 1024;
/// Most hits `kb_search` answers.
pub const MAX_HITS: usize = 50;

/// The articles shipped with the relay: (file name, text).
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "printing-cups-down.md",
        include_str!("../kb/printing-cups-down.md"),
    ),
    (
        "printing-queue-unknown.md",
        include_str!("../kb/printing-queue-unknown.md"),
    ),
    (
        "printing-printer-unreachable.md",
        include_str!("../kb/printing-printer-unreachable.md"),
    ),
    (
        "printing-queue-stopped.md",
        include_str!("../kb/printing-queue-stopped.md"),
    ),
    (
        "printing-stuck-jobs.md",
        include_str!("../kb/printing-stuck-jobs.md"),
    ),
    (
        "printing-needs-attention.md",
        include_str!("../kb/printing-needs-attention.md"),
    ),
    ("disk-full.md", include_str!("../kb/disk-full.md")),
    ("disk-inodes.md", include_str!("../kb/disk-inodes.md")),
    ("disk-read-only.md", include_str!("../kb/disk-read-only.md")),
    (
        "disk-deleted-open-files.md",
        include_str!("../kb/disk-deleted-open-files.md"),
    ),
    (
        "network-no-link.md",
        include_str!("../kb/network-no-link.md"),
    ),
    (
        "network-no-address.md",
        include_str!("../kb/network-no-address.md"),
    ),
    (
        "network-no-default-route.md",
        include_str!("../kb/network-no-default-route.md"),
    ),
    (
        "network-gateway-unreachable.md",
        include_str!("../kb/network-gateway-unreachable.md"),
    ),
    (
        "network-upstream-unreachable.md",
        include_str!("../kb/network-upstream-unreachable.md"),
    ),
    ("network-dns.md", include_str!("../kb/network-dns.md")),
    (
        "network-local-firewall.md",
        include_str!("../kb/network-local-firewall.md"),
    ),
    (
        "network-packet-loss.md",
        include_str!("../kb/network-packet-loss.md"),
    ),
    (
        "network-mtu-blackhole.md",
        include_str!("../kb/network-mtu-blackhole.md"),
    ),
    (
        "network-captive-portal.md",
        include_str!("../kb/network-captive-portal.md"),
    ),
    (
        "network-dns-not-configured.md",
        include_str!("../kb/network-dns-not-configured.md"),
    ),
    (
        "network-dns-slow.md",
        include_str!("../kb/network-dns-slow.md"),
    ),
];

/// One article as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub id: String,
    pub title: String,
    pub tags: Vec<String>,
    pub body: String,
}

impl Article {
    pub fn to_wire(&self) -> KbArticle {
        KbArticle {
            id: self.id.clone(),
            title: self.title.clone(),
            tags: self.tags.clone(),
            body: self.body.clone(),
        }
    }
}

/// Parse one article; `stem` is the file name without `.md`. An error is
/// `(line, why)`, line counted from 1.
pub fn parse(stem: &str, text: &str) -> Result<Article, (usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut id, mut title, mut tags) = (None, None, Vec::new());
    let mut body_start = 0;
    if lines.first().map(|l| l.trim_end()) == Some("---") {
        let end = lines
            .iter()
            .skip(1)
            .position(|l| l.trim_end() == "---")
            .map(|i| i + 1)
            .ok_or((
                1,
                "front matter opened with `---` is never closed".to_string(),
            ))?;
        for (i, line) in lines.iter().enumerate().take(end).skip(1) {
            let n = i + 1;
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .ok_or((n, format!("expected `key: value`, found `{}`", line.trim())))?;
            let value = value.trim().trim_matches('"').trim();
            match key.trim() {
                "id" => id = Some((n, value.to_string())),
                "title" => title = Some(value.to_string()),
                "tags" => {
                    tags = value
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .split(',')
                        .map(|t| t.trim().trim_matches('"').to_lowercase())
                        .filter(|t| !t.is_empty())
                        .collect()
                }
                other => {
                    return Err((
                        n,
                        format!("unknown key `{other}` (expected id, title, tags)"),
                    ))
                }
            }
        }
        body_start = end + 1;
    }
    let (id_line, id) = id.unwrap_or((1, stem.to_string()));
    if !valid_id(&id) {
        return Err((
            id_line,
            format!(
                "id `{id}`: 1 to 64 of a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit"
            ),
        ));
    }
    let mut body: Vec<&str> = lines.get(body_start..).unwrap_or_default().to_vec();
    let title = match title.filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            let at = body
                .iter()
                .position(|l| !l.trim().is_empty())
                .filter(|&i| body[i].starts_with("# "))
                .ok_or((
                    body_start + 1,
                    "no title: give `title:` in the front matter or start with a `# ` heading"
                        .to_string(),
                ))?;
            let t = body[at][2..].trim().to_string();
            body.drain(..=at);
            t
        }
    };
    let body = body.join("\n").trim().to_string();
    Ok(Article {
        id,
        title,
        tags,
        body,
    })
}

/// The articles of a folder, by id, and what was wrong with the rest.
#[derive(Debug, Default)]
pub struct Kb {
    pub articles: Vec<Article>,
    /// `FILE:LINE: why` per skipped file.
    pub errors: Vec<String>,
}

impl Kb {
    /// Read every `*.md` of `dir` (bounded); a missing folder is empty.
    pub fn load(dir: &Path) -> Kb {
        let mut kb = Kb::default();
        let files = match listing(dir) {
            Ok(f) => f,
            Err(e) => {
                if dir.exists() {
                    kb.errors.push(format!("{}: {e}", dir.display()));
                }
                return kb;
            }
        };
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for (i, (path, len, _)) in files.iter().enumerate() {
            let shown = path.display();
            if i >= MAX_ARTICLES {
                kb.errors.push(format!(
                    "{}: more than {MAX_ARTICLES} articles; {} skipped",
                    dir.display(),
                    files.len() - MAX_ARTICLES
                ));
                break;
            }
            if *len > MAX_ARTICLE_BYTES {
                kb.errors.push(format!(
                    "{shown}:1: {len} bytes; an article has at most {MAX_ARTICLE_BYTES}"
                ));
                continue;
            }
            let text = match std::fs::read(path).map(String::from_utf8) {
                Ok(Ok(t)) => t,
                Ok(Err(_)) => {
                    kb.errors.push(format!("{shown}:1: not UTF-8 text"));
                    continue;
                }
                Err(e) => {
                    kb.errors.push(format!("{shown}:1: cannot read: {e}"));
                    continue;
                }
            };
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match parse(&stem, &text) {
                Ok(a) => {
                    if let Some(first) = seen.get(&a.id) {
                        kb.errors.push(format!(
                            "{shown}:1: id `{}` is already {}",
                            a.id,
                            first.display()
                        ));
                        continue;
                    }
                    seen.insert(a.id.clone(), path.clone());
                    kb.articles.push(a);
                }
                Err((line, why)) => kb.errors.push(format!("{shown}:{line}: {why}")),
            }
        }
        kb.articles.sort_by(|a, b| a.id.cmp(&b.id));
        kb
    }

    pub fn get(&self, id: &str) -> Option<&Article> {
        self.articles
            .binary_search_by(|a| a.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.articles[i])
    }

    /// Articles with every word of `text` in their title, tags or body
    /// (case-insensitive); those with more words in the title first, then
    /// in the tags, then by id.
    pub fn search(&self, text: &str) -> Vec<KbHit> {
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        let mut hits: Vec<(usize, usize, KbHit)> = Vec::new();
        for a in &self.articles {
            let title = a.title.to_lowercase();
            let tags = a.tags.join(" ");
            let body = a.body.to_lowercase();
            let mut in_title = 0;
            let mut in_tags = 0;
            let all = words.iter().all(|w| {
                let t = title.contains(w.as_str());
                let g = tags.contains(w.as_str());
                in_title += usize::from(t);
                in_tags += usize::from(g);
                t || g || body.contains(w.as_str())
            });
            if !all {
                continue;
            }
            let excerpt = a
                .body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .find(|l| {
                    let l = l.to_lowercase();
                    words.iter().any(|w| l.contains(w.as_str()))
                })
                .or_else(|| {
                    a.body
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty() && !l.starts_with('#'))
                })
                .unwrap_or_default();
            let excerpt: String = excerpt.chars().take(160).collect();
            hits.push((
                in_title,
                in_tags,
                KbHit {
                    id: a.id.clone(),
                    title: a.title.clone(),
                    tags: a.tags.clone(),
                    excerpt,
                },
            ));
        }
        hits.sort_by(|a, b| {
            (b.0, b.1)
                .cmp(&(a.0, a.1))
                .then_with(|| a.2.id.cmp(&b.2.id))
        });
        hits.into_iter().take(MAX_HITS).map(|h| h.2).collect()
    }

    /// Up to five ids close to `id` (a typo, a prefix, a part of it),
    /// closest first.
    pub fn close_ids(&self, id: &str) -> Vec<String> {
        let id = id.to_lowercase();
        let mut close: Vec<(usize, &str)> = self
            .articles
            .iter()
            .filter_map(|a| {
                let d = distance(&id, &a.id);
                let near = d <= 2.max(id.len() / 3)
                    || (id.len() >= 3 && (a.id.contains(&id) || id.contains(&a.id)));
                near.then_some((d, a.id.as_str()))
            })
            .collect();
        close.sort();
        close.into_iter().take(5).map(|c| c.1.to_string()).collect()
    }
}

/// Levenshtein distance over bytes (ids are ASCII).
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut prev = row[0];
        row[0] = i;
        for j in 1..=b.len() {
            let cur = row[j];
            row[j] = (row[j] + 1)
                .min(row[j - 1] + 1)
                .min(prev + usize::from(a[i - 1] != b[j - 1]));
            prev = cur;
        }
    }
    row[b.len()]
}

/// `(path, size, modified)` of each `*.md` file of `dir`, by name, at most
/// `MAX_ARTICLES + 1` read in full (so that one too many is noticed).
type Listing = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn listing(dir: &Path) -> std::io::Result<Listing> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        files.push((path, meta.len(), meta.modified().ok()));
        if files.len() > 4 * MAX_ARTICLES {
            break;
        }
    }
    files.sort();
    Ok(files)
}

/// The articles of `dir` now: read again only when its listing changed
/// since the last call (errors logged once per change). Blocking: call it
/// off the async workers.
pub fn current(dir: &Path) -> Arc<Kb> {
    static CACHE: Mutex<Vec<(PathBuf, Listing, Arc<Kb>)>> = Mutex::new(Vec::new());
    let now = listing(dir).unwrap_or_default();
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, seen, kb)) = cache.iter().find(|c| c.0 == dir) {
        if *seen == now {
            return kb.clone();
        }
    }
    let kb = Arc::new(Kb::load(dir));
    log(dir, &kb);
    cache.retain(|c| c.0 != dir);
    cache.push((dir.to_path_buf(), now, kb.clone()));
    kb
}

/// What a (re)load found, in the log.
pub fn log(dir: &Path, kb: &Kb) {
    for e in &kb.errors {
        tracing::warn!("knowledge base: skipped {e}");
    }
    tracing::info!(
        "knowledge base: {} articles in {}",
        kb.articles.len(),
        dir.display()
    );
}

/// [`current`] on the blocking pool.
pub async fn current_async(dir: PathBuf) -> Arc<Kb> {
    tokio::task::spawn_blocking(move || current(&dir))
        .await
        .unwrap_or_default()
}

/// The article `id`, or an error that names the ids close to it (consoles'
/// `kb_show`, `crate::requests::kb`; agents', `crate::agent_link`).
pub async fn article(dir: PathBuf, id: &str) -> Result<KbArticle, crate::error::RelayError> {
    use crate::error::RelayError;
    if !valid_id(id) {
        return Err(RelayError::bad_request(
            "kb show: an article id is 1 to 64 of a-z, 0-9, `-`, `_`, `.` (`firstline kb search TEXT` finds them)",
        ));
    }
    let kb = current_async(dir).await;
    if let Some(a) = kb.get(id) {
        return Ok(a.to_wire());
    }
    let close = kb.close_ids(id);
    Err(RelayError::bad_request(if close.is_empty() {
        format!(
            "no article `{id}` in the knowledge base; `firstline kb search TEXT` finds articles"
        )
    } else {
        format!(
            "no article `{id}` in the knowledge base; close ids: {}",
            close.join(", ")
        )
    }))
}

/// Write the shipped articles into `dir` (created), keeping any file of
/// the same name already there (an admin's edit wins). A folder it makes
/// is 0700 and the articles 0644, whatever the umask: what end users are
/// shown is writable by the relay's user only.
pub fn install_shipped(dir: &Path) -> std::io::Result<usize> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    firstline_net::private::create_dir(dir, 0o700)?;
    let mut written = 0;
    for (name, text) in SHIPPED {
        let path = dir.join(name);
        if !path.exists() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.write_all(text.as_bytes())?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb(articles: &[(&str, &str)]) -> Kb {
        let mut articles: Vec<Article> = articles
            .iter()
            .map(|(stem, text)| parse(stem, text).unwrap())
            .collect();
        articles.sort_by(|a, b| a.id.cmp(&b.id));
        Kb {
            articles,
            errors: vec![],
        }
    }

    #[test]
    fn front_matter_or_heading() {
        let a = parse(
            "x",
            "---\nid: printer-paper\ntitle: \"Add paper\"\ntags: Printing, paper\n---\n\nOpen tray 2.\n",
        )
        .unwrap();
        assert_eq!(a.id, "printer-paper");
        assert_eq!(a.title, "Add paper");
        assert_eq!(a.tags, ["printing", "paper"]);
        assert_eq!(a.body, "Open tray 2.");
        let b = parse("disk-full", "\n# The disk is full\n\nDelete things.\n").unwrap();
        assert_eq!(
            (b.id.as_str(), b.title.as_str()),
            ("disk-full", "The disk is full")
        );
        assert_eq!(b.body, "Delete things.");
    }

    #[test]
    fn errors_say_which_line() {
        assert_eq!(parse("x", "---\ntitle: t\n").unwrap_err().0, 1);
        let (line, why) = parse("x", "---\ntitle: t\ncolour: red\n---\n").unwrap_err();
        assert_eq!(line, 3, "{why}");
        assert!(why.contains("colour"));
        let (line, _) = parse("x", "---\ntitle: t\nid: ../etc\n---\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(parse("Bad Name", "# t\n").is_err());
        let (line, why) = parse("x", "---\nid: x\n---\nno heading\n").unwrap_err();
        assert_eq!(line, 4, "{why}");
    }

    #[test]
    fn search_ranks_title_hits_first() {
        let kb = kb(&[
            ("a-body", "# Something else\n\nThe printer is out of paper."),
            ("b-title", "# Printer out of paper\n\nAdd paper."),
            (
                "c-tags",
                "---\ntitle: Trays\ntags: printer\n---\nLoad paper.",
            ),
            ("d-none", "# Disk\n\nfull"),
        ]);
        let ids: Vec<String> = kb
            .search("PAPER printer")
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, ["b-title", "c-tags", "a-body"]);
        let hit = &kb.search("out of paper")[1];
        assert_eq!(hit.excerpt, "The printer is out of paper.");
        assert!(kb.search("toner").is_empty());
    }

    #[test]
    fn close_ids_for_a_typo() {
        let kb = kb(&[
            ("network-dns", "# a"),
            ("network-dns-slow", "# b"),
            ("disk-full", "# c"),
        ]);
        assert_eq!(kb.close_ids("network-dsn"), ["network-dns"]);
        assert_eq!(kb.close_ids("disk"), ["disk-full"]);
        assert!(kb.close_ids("printer").is_empty());
        assert_eq!(kb.get("disk-full").unwrap().title, "c");
    }

    #[test]
    fn load_skips_bad_files_and_sees_edits() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("good.md"), "# Good\n\ntext").unwrap();
        std::fs::write(d.join("bad.md"), "---\ntitle: x\nwho: me\n---\n").unwrap();
        std::fs::write(d.join("big.md"), vec![b'a'; MAX_ARTICLE_BYTES as usize + 1]).unwrap();
        std::fs::write(d.join("notes.txt"), "ignored").unwrap();
        let kb = current(d);
        assert_eq!(kb.articles.len(), 1);
        assert_eq!(kb.errors.len(), 2, "{:?}", kb.errors);
        assert!(kb
            .errors
            .iter()
            .any(|e| e.ends_with("bad.md:3: unknown key `who` (expected id, title, tags)")));
        assert!(Arc::ptr_eq(&kb, &current(d)), "unchanged: not read again");
        std::fs::write(d.join("good.md"), "# Better\n\nmore text").unwrap();
        assert_eq!(current(d).get("good").unwrap().title, "Better");
    }

    #[test]
    fn shipped_articles_parse_and_cover_the_shipped_runbooks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(install_shipped(dir.path()).unwrap(), SHIPPED.len());
        let kb = Kb::load(dir.path());
        assert!(kb.errors.is_empty(), "{:?}", kb.errors);
        assert_eq!(kb.articles.len(), SHIPPED.len());
        for (name, _) in SHIPPED {
            assert!(
                kb.get(name.trim_end_matches(".md")).is_some(),
                "{name}: id is its stem"
            );
        }
        // Every `kb = "…"` of agent/runbooks/*.toml is a shipped article,
        // and every user-action verdict has one.
        let runbooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/runbooks");
        let mut named = 0;
        for entry in std::fs::read_dir(&runbooks).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: toml::Table = toml::from_str(&text).unwrap();
            let verdicts = doc.get("verdict").and_then(|v| v.as_table()).unwrap();
            for (cause, v) in verdicts {
                let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
                match v.get("kb").and_then(|k| k.as_str()) {
                    Some(id) => {
                        named += 1;
                        assert!(
                            kb.get(id).is_some(),
                            "{}: {cause}: kb `{id}` not shipped",
                            path.display()
                        );
                    }
                    None => assert_ne!(
                        kind,
                        "user-action",
                        "{}: {cause} needs a kb article",
                        path.display()
                    ),
                }
            }
        }
        assert!(named >= 10);
    }
}
