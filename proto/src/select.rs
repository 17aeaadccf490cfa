//! Selectors: which machines a list or an action is about
//! (`firstline agents --select 'tag=floor2,os=debian*'`).
//!
//! ```text
//! SEL   = TERM ("," TERM)*        every term must hold (AND)
//! TERM  = KEY "=" VALUE           blanks around terms, keys and values are ignored
//! KEY   = name | tag | os | online | health
//! ```
//!
//! | key | value | holds when |
//! |---|---|---|
//! | `name` | a glob of the name alphabet (`pc-*`, `pc-0??`), or several separated by `\|` (`pc1\|pc2\|lab-*`) | the agent's name matches it — one of them (case matters, as in names) |
//! | `tag` | a tag (`floor2`), matched exactly | the agent carries that tag |
//! | `os` | a glob (`debian*`, `*bookworm*`) | its OS line matches it, ASCII case ignored (`Debian GNU/Linux 12`) |
//! | `online` | `true` or `false` | it is connected to a relay of the deployment right now |
//! | `health` | `ok`, `warn`, `crit` or `unknown` | its health ([`worst`]) is that |
//!
//! A glob matches the whole text: `*` any run of characters (none too),
//! `?` exactly one; nothing else is special (no classes, no escapes). A key
//! may come back (`tag=a,tag=b`: both tags). Commas separate terms, so no
//! value holds one.
//!
//! **Alternatives** (`name=pc1|pc2|pc7`): a `name` term may list several
//! globs, any one of which must match — "one of these machines", as the web
//! console's fleet page sends a hand-picked set. `|` was never part of the
//! name alphabet, so no selector an older console wrote changes meaning,
//! and an older relay refuses such a selector instead of picking other
//! machines. Only plain `name` terms (one glob) are pushed into a
//! database query ([`Selector::names`]); every term is checked after.
//!
//! **Health** is the worst latest status of the agent's monitors, in the
//! order `ok` < `unknown` < `warn` < `crit`; an agent whose relay has no
//! monitor status of it yet (no `[[monitor]]`, or none reported) is
//! `unknown` — nothing says it is well. A monitor that cannot run (a
//! configuration problem) counts with the status it reported (`unknown`).
//!
//! Sans-IO like the rest of the crate: parsing and matching only, fuzzed
//! and property-tested; the relay pushes what it can of a selector into its
//! database query and checks every agent with [`Selector::matches`] after.

use crate::message::AgentInfo;
use crate::result::Status;
use std::fmt;

/// Most bytes of a selector.
pub const MAX_LEN: usize = 4096;
/// Most terms of a selector.
pub const MAX_TERMS: usize = 64;
/// Most bytes of an `os` glob (an OS line is at most 256).
pub const MAX_OS_GLOB: usize = 256;
/// Most tags an agent or a token carries.
pub const MAX_TAGS: usize = 32;
/// Most bytes of a tag.
pub const MAX_TAG_LEN: usize = 64;

/// The health values, in the order of [`health_rank`].
pub const HEALTH_VALUES: [&str; 4] = ["ok", "unknown", "warn", "crit"];

/// A selector's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Name,
    Tag,
    Os,
    Online,
    Health,
}

impl Key {
    pub const ALL: [Key; 5] = [Key::Name, Key::Tag, Key::Os, Key::Online, Key::Health];

    pub fn as_str(self) -> &'static str {
        match self {
            Key::Name => "name",
            Key::Tag => "tag",
            Key::Os => "os",
            Key::Online => "online",
            Key::Health => "health",
        }
    }

    fn parse(s: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

const KEYS: &str = "name, tag, os, online or health";

/// A glob: `*` any run of characters, `?` one character, the rest itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    pattern: String,
    /// ASCII case ignored.
    fold: bool,
}

impl Glob {
    /// A glob that compares case as it is.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_string(),
            fold: false,
        }
    }

    /// A glob that ignores ASCII case.
    pub fn folding(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_string(),
            fold: true,
        }
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether ASCII case is ignored.
    pub fn folds(&self) -> bool {
        self.fold
    }

    /// Whether the whole of `text` matches. Linear in the text for each
    /// `*` tried at most once (the classic backtracking to the last star):
    /// O(pattern × text) at worst, no recursion.
    pub fn matches(&self, text: &str) -> bool {
        let eq = |p: char, t: char| {
            if self.fold {
                p.eq_ignore_ascii_case(&t)
            } else {
                p == t
            }
        };
        let p: Vec<char> = self.pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        // Where the last `*` was, and the text position it now covers up to.
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if pi < p.len() && (p[pi] == '?' || eq(p[pi], t[ti])) {
                pi += 1;
                ti += 1;
            } else if let Some((sp, st)) = star {
                // The star takes one more character.
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// One `key=value` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Term {
    Name(Glob),
    /// `name=a|b|c`: one of several globs (at least two).
    NameAny(Vec<Glob>),
    Tag(String),
    Os(Glob),
    Online(bool),
    Health(Status),
}

impl Term {
    pub fn key(&self) -> Key {
        match self {
            Term::Name(_) | Term::NameAny(_) => Key::Name,
            Term::Tag(_) => Key::Tag,
            Term::Os(_) => Key::Os,
            Term::Online(_) => Key::Online,
            Term::Health(_) => Key::Health,
        }
    }

    /// Whether the term holds for `agent`.
    pub fn matches(&self, agent: &AgentView<'_>) -> bool {
        match self {
            Term::Name(g) => g.matches(agent.name),
            Term::NameAny(gs) => gs.iter().any(|g| g.matches(agent.name)),
            Term::Tag(t) => agent.tags.iter().any(|x| x == t),
            Term::Os(g) => g.matches(agent.os),
            Term::Online(o) => agent.online == *o,
            Term::Health(h) => agent.health == *h,
        }
    }

    fn parse(text: &str) -> Result<Term, String> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(format!(
                "selector term `{text}` is not KEY=VALUE (keys: {KEYS}; e.g. tag=floor2,os=debian*)"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let Some(k) = Key::parse(key) else {
            return Err(format!(
                "unknown selector key `{key}` in `{text}`: use {KEYS}"
            ));
        };
        if value.is_empty() {
            return Err(format!("selector term `{key}=` has no value"));
        }
        Ok(match k {
            Key::Name if value.contains('|') => {
                let globs = value
                    .split('|')
                    .map(|alt| name_glob(alt.trim(), value))
                    .collect::<Result<Vec<_>, _>>()?;
                Term::NameAny(globs)
            }
            Key::Name => Term::Name(name_glob(value, value)?),
            Key::Tag => {
                check_tag(value).map_err(|e| {
                    let exact = if value.contains(['*', '?']) {
                        " (tags are matched exactly: no `*` or `?`)"
                    } else {
                        ""
                    };
                    format!("tag=`{value}`: {e}{exact}")
                })?;
                Term::Tag(value.to_string())
            }
            Key::Os => {
                if value.len() > MAX_OS_GLOB || value.chars().any(crate::text::is_unsafe) {
                    return Err(format!(
                        "os=`{}`: an OS glob is one line of at most {MAX_OS_GLOB} bytes",
                        crate::text::printable(value)
                    ));
                }
                Term::Os(Glob::folding(value))
            }
            Key::Online => match value {
                "true" => Term::Online(true),
                "false" => Term::Online(false),
                other => return Err(format!("online=`{other}`: use true or false")),
            },
            Key::Health => match parse_health(value) {
                Some(h) => Term::Health(h),
                None => return Err(format!("health=`{value}`: use ok, warn, crit or unknown")),
            },
        })
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.key().as_str())?;
        match self {
            Term::Name(g) | Term::Os(g) => write!(f, "{g}"),
            Term::NameAny(gs) => {
                for (i, g) in gs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    write!(f, "{g}")?;
                }
                Ok(())
            }
            Term::Tag(t) => f.write_str(t),
            Term::Online(o) => write!(f, "{o}"),
            Term::Health(h) => f.write_str(h.as_str()),
        }
    }
}

/// One name glob (`alt`) of the `name=` value `whole`.
fn name_glob(alt: &str, whole: &str) -> Result<Glob, String> {
    if alt.is_empty() {
        return Err(format!(
            "name=`{whole}`: an empty alternative; write name=pc1|pc2 (globs separated by single `|`)"
        ));
    }
    if !alt
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-*?".contains(&b))
        || alt.len() > MAX_TAG_LEN
    {
        return Err(format!(
            "name=`{whole}`: a name glob is up to {MAX_TAG_LEN} letters, digits, `.`, `_`, `-`, with `*` (any run) and `?` (one character); `|` separates alternatives"
        ));
    }
    Ok(Glob::new(alt))
}

fn parse_health(s: &str) -> Option<Status> {
    match s {
        "ok" => Some(Status::Ok),
        "warn" => Some(Status::Warn),
        "crit" => Some(Status::Crit),
        "unknown" => Some(Status::Unknown),
        _ => None,
    }
}

/// What a selector looks at of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentView<'a> {
    pub name: &'a str,
    pub tags: &'a [String],
    /// Its OS line (empty when unknown).
    pub os: &'a str,
    pub online: bool,
    pub health: Status,
}

impl<'a> From<&'a AgentInfo> for AgentView<'a> {
    fn from(a: &'a AgentInfo) -> Self {
        AgentView {
            name: &a.name,
            tags: &a.tags,
            os: a.os.as_deref().unwrap_or_default(),
            online: a.online,
            health: a.health,
        }
    }
}

/// Terms that must all hold; no terms: every agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    terms: Vec<Term>,
}

impl Selector {
    /// The selector of every agent (what no `--select` means).
    pub fn all() -> Selector {
        Selector::default()
    }

    /// Parse `tag=floor2,os=debian*`. Errors are one line that says what
    /// to write instead (the keys, or the values a key takes).
    pub fn parse(text: &str) -> Result<Selector, String> {
        if text.len() > MAX_LEN {
            return Err(format!(
                "selector of {} bytes: at most {MAX_LEN}",
                text.len()
            ));
        }
        if text.trim().is_empty() {
            return Err(format!(
                "empty selector: write KEY=VALUE terms separated by commas, keys {KEYS} (e.g. tag=floor2,os=debian*)"
            ));
        }
        let parts: Vec<&str> = text.split(',').collect();
        if parts.len() > MAX_TERMS {
            return Err(format!(
                "selector of {} terms: at most {MAX_TERMS}",
                parts.len()
            ));
        }
        let mut terms = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!(
                    "empty term {} in selector `{}`: terms are KEY=VALUE separated by single commas",
                    i + 1,
                    crate::text::printable(text.trim())
                ));
            }
            terms.push(Term::parse(part).map_err(|e| crate::text::printable(&e).into_owned())?);
        }
        Ok(Selector { terms })
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Whether it has no term (selects every agent).
    pub fn is_all(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether every term holds for `agent`.
    pub fn matches(&self, agent: &AgentView<'_>) -> bool {
        self.terms.iter().all(|t| t.matches(agent))
    }

    /// The same selector without the terms of `key` (for a store that
    /// cannot know them: `online` is the relays' to say).
    pub fn without(&self, key: Key) -> Selector {
        Selector {
            terms: self
                .terms
                .iter()
                .filter(|t| t.key() != key)
                .cloned()
                .collect(),
        }
    }

    /// The globs of the plain `name` terms (one glob each: what must hold
    /// of every agent picked). Terms of alternatives are left out: a
    /// database filter that ANDs these stays a superset.
    pub fn names(&self) -> impl Iterator<Item = &Glob> {
        self.terms.iter().filter_map(|t| match t {
            Term::Name(g) => Some(g),
            _ => None,
        })
    }

    /// The globs of the `os` terms (they ignore ASCII case).
    pub fn oses(&self) -> impl Iterator<Item = &Glob> {
        self.terms.iter().filter_map(|t| match t {
            Term::Os(g) => Some(g),
            _ => None,
        })
    }

    /// The tags of the `tag` terms.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().filter_map(|t| match t {
            Term::Tag(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

impl std::str::FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Selector::parse(s)
    }
}

/// The canonical form: `key=value` terms joined by `,`, blanks gone; it
/// parses back to the same selector.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// Where a status stands for health: `ok` 0 < `unknown` 1 < `warn` 2 <
/// `crit` 3.
pub fn health_rank(s: Status) -> u8 {
    match s {
        Status::Ok => 0,
        Status::Unknown => 1,
        Status::Warn => 2,
        Status::Crit => 3,
    }
}

/// The status of a [`health_rank`].
pub fn health_of_rank(rank: u8) -> Status {
    match rank {
        0 => Status::Ok,
        2 => Status::Warn,
        3.. => Status::Crit,
        1 => Status::Unknown,
    }
}

/// An agent's health from its monitors' latest statuses: the worst of
/// them ([`Status::worst`], the order of [`health_rank`]), `unknown` when
/// there are none.
pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses
        .into_iter()
        .reduce(Status::worst)
        .unwrap_or(Status::Unknown)
}

/// Whether `tag` is a tag: 1–64 of `A-Z a-z 0-9 . _ -`, not starting with
/// `.` or `-` (the alphabet of agent names); the error says so.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a tag is 1–{MAX_TAG_LEN} letters, digits, `.`, `_` or `-`, not starting with `.` or `-`"
        ))
    }
}

/// Check a list of tags (a token's, or an agent's after a change): each a
/// tag, at most [`MAX_TAGS`].
pub fn check_tags(tags: &[String]) -> Result<(), String> {
    for t in tags {
        check_tag(t).map_err(|e| format!("tag `{}`: {e}", crate::text::printable(t)))?;
    }
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "{} tags: an agent carries at most {MAX_TAGS}",
            tags.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view<'a>(name: &'a str, tags: &'a [String], os: &'a str) -> AgentView<'a> {
        AgentView {
            name,
            tags,
            os,
            online: true,
            health: Status::Ok,
        }
    }

    #[test]
    fn globs() {
        let g = Glob::new;
        assert!(g("pc-*").matches("pc-042"));
        assert!(g("pc-*").matches("pc-"));
        assert!(!g("pc-*").matches("PC-042"), "names keep their case");
        assert!(g("pc-0??").matches("pc-042"));
        assert!(!g("pc-0??").matches("pc-0420"));
        assert!(g("*").matches(""));
        assert!(g("*a*b*").matches("xxaxxbxx"));
        assert!(!g("*a*b").matches("xxaxxbxx"));
        assert!(g("a*b*c").matches("abbbc"));
        assert!(!g("").matches("a"));
        assert!(g("").matches(""));
        assert!(Glob::folding("debian*").matches("Debian GNU/Linux 12"));
        assert!(!Glob::folding("debian").matches("Debian GNU/Linux 12"));
        assert!(Glob::folding("*BOOKWORM*").matches("Debian 12 (bookworm)"));
        assert!(g("é?").matches("éà"), "characters, not bytes");
        // Pathological patterns stay fast.
        let long = "a".repeat(2000);
        assert!(!g(&format!("{}b", "*a".repeat(60))).matches(&long));
    }

    #[test]
    fn selectors_parse_and_match() {
        let s = Selector::parse(" tag=floor2 , os=debian* ").unwrap();
        assert_eq!(s.to_string(), "tag=floor2,os=debian*");
        let tags = vec!["floor2".to_string(), "printers".to_string()];
        assert!(s.matches(&view("pc1", &tags, "Debian GNU/Linux 12")));
        assert!(!s.matches(&view("pc1", &tags, "Fedora Linux 40")));
        assert!(!s.matches(&view("pc1", &[], "Debian GNU/Linux 12")));
        let both = Selector::parse("tag=floor2,tag=printers").unwrap();
        assert!(both.matches(&view("x", &tags, "")));
        assert!(!both.matches(&view("x", &tags[..1], "")));
        let mut v = view("pc1", &tags, "");
        let online = Selector::parse("online=false").unwrap();
        assert!(!online.matches(&v));
        v.online = false;
        assert!(online.matches(&v));
        let crit = Selector::parse("health=crit").unwrap();
        assert!(!crit.matches(&v));
        v.health = Status::Crit;
        assert!(crit.matches(&v));
        assert!(Selector::all().matches(&v));
        assert_eq!(
            Selector::parse("online=true,name=pc*")
                .unwrap()
                .without(Key::Online)
                .to_string(),
            "name=pc*"
        );
    }

    #[test]
    fn name_alternatives() {
        let s = Selector::parse("name=pc1|pc2 | lab-*").unwrap();
        assert_eq!(s.to_string(), "name=pc1|pc2|lab-*");
        let none: Vec<String> = vec![];
        for (name, picked) in [
            ("pc1", true),
            ("pc2", true),
            ("lab-3", true),
            ("pc3", false),
        ] {
            assert_eq!(s.matches(&view(name, &none, "")), picked, "{name}");
        }
        // Not pushed into a database filter: only plain globs are.
        assert_eq!(s.names().count(), 0);
        let mixed = Selector::parse("name=pc*,name=pc1|pc9").unwrap();
        assert_eq!(
            mixed.names().map(Glob::pattern).collect::<Vec<_>>(),
            ["pc*"]
        );
        assert!(mixed.matches(&view("pc1", &none, "")));
        assert!(!mixed.matches(&view("lab1", &none, "")));
        // A plain name is what it was.
        assert_eq!(
            Selector::parse("name=pc1").unwrap().terms(),
            [Term::Name(Glob::new("pc1"))]
        );
        let e = |s: &str| Selector::parse(s).unwrap_err();
        assert!(
            e("name=pc1||pc2").contains("empty alternative"),
            "{}",
            e("name=pc1||pc2")
        );
        assert!(e("name=|pc2").contains("empty alternative"));
        assert!(e("name=pc1|pc 2").contains("name glob"));
        assert!(
            e("tag=a|b").contains("a tag is"),
            "alternatives are for names only"
        );
    }

    #[test]
    fn errors_say_what_to_write() {
        let e = |s: &str| Selector::parse(s).unwrap_err();
        assert!(e("").contains("empty selector"), "{}", e(""));
        assert!(e("room=2").contains("unknown selector key `room`"));
        assert!(e("room=2").contains("name, tag, os, online or health"));
        assert!(e("floor2").contains("not KEY=VALUE"));
        assert!(
            e("tag=a,,os=b").contains("empty term 2"),
            "{}",
            e("tag=a,,os=b")
        );
        assert!(e("tag=a,").contains("empty term 2"));
        assert!(e("online=yes").contains("use true or false"));
        assert!(e("health=bad").contains("use ok, warn, crit or unknown"));
        assert!(e("tag=").contains("has no value"));
        assert!(e("tag=flo*").contains("matched exactly"));
        assert!(e("tag=a b").contains("a tag is"));
        assert!(e("name=pc 1").contains("name glob"));
        assert!(e("os=a\u{1b}[2J").contains("one line"));
        assert!(
            !e("os=a\u{1b}[2J").contains('\u{1b}'),
            "errors are printable"
        );
        assert!(e(&"name=a,".repeat(100)).contains("at most 64"));
    }

    #[test]
    fn health_is_the_worst_status() {
        assert_eq!(worst([]), Status::Unknown, "no monitor: nothing says well");
        assert_eq!(worst([Status::Ok, Status::Ok]), Status::Ok);
        assert_eq!(worst([Status::Ok, Status::Unknown]), Status::Unknown);
        assert_eq!(worst([Status::Unknown, Status::Warn]), Status::Warn);
        assert_eq!(
            worst([Status::Crit, Status::Warn, Status::Ok]),
            Status::Crit
        );
        for s in [Status::Ok, Status::Warn, Status::Crit, Status::Unknown] {
            assert_eq!(health_of_rank(health_rank(s)), s);
            for t in [Status::Ok, Status::Warn, Status::Crit, Status::Unknown] {
                let by_rank = if health_rank(s) >= health_rank(t) {
                    s
                } else {
                    t
                };
                assert_eq!(s.worst(t), by_rank, "one order of severity");
            }
            assert_eq!(HEALTH_VALUES[health_rank(s) as usize], s.as_str());
        }
    }

    #[test]
    fn tags() {
        assert!(check_tag("floor2").is_ok());
        assert!(check_tag("x".repeat(64).as_str()).is_ok());
        assert!(check_tag("x".repeat(65).as_str()).is_err());
        assert!(check_tag("-x").is_err());
        assert!(check_tag("").is_err());
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert!(check_tags(&many).unwrap_err().contains("at most 32"));
        assert!(check_tags(&many[..32]).is_ok());
    }

    fn name_glob() -> impl Strategy<Value = String> {
        "[a-z0-9*?._-]{1,12}".prop_filter("not blank", |s| !s.trim().is_empty())
    }

    fn term() -> impl Strategy<Value = Term> {
        prop_oneof![
            name_glob().prop_map(|g| Term::Name(Glob::new(&g))),
            proptest::collection::vec(name_glob(), 2..5)
                .prop_map(|gs| Term::NameAny(gs.iter().map(|g| Glob::new(g)).collect())),
            "[a-z0-9][a-z0-9._-]{0,10}".prop_map(Term::Tag),
            "[A-Za-z0-9*?/ ()._-]{0,20}[A-Za-z0-9*?/()._-]"
                .prop_filter("no blank ends", |s| s.trim() == s)
                .prop_map(|g| Term::Os(Glob::folding(&g))),
            any::<bool>().prop_map(Term::Online),
            prop_oneof![
                Just(Status::Ok),
                Just(Status::Warn),
                Just(Status::Crit),
                Just(Status::Unknown)
            ]
            .prop_map(Term::Health),
        ]
    }

    proptest! {
        #[test]
        fn display_parses_back(terms in proptest::collection::vec(term(), 1..8)) {
            let s = Selector { terms };
            let text = s.to_string();
            prop_assert_eq!(Selector::parse(&text).unwrap(), s);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,64}") {
            if let Ok(s) = Selector::parse(&text) {
                // What parses is canonical after one round.
                let again = Selector::parse(&s.to_string()).unwrap();
                prop_assert_eq!(again, s);
            }
        }

        #[test]
        fn a_literal_glob_matches_itself_and_star_matches_all(text in "[a-z0-9._-]{0,20}") {
            prop_assert!(Glob::new(&text).matches(&text));
            prop_assert!(Glob::new("*").matches(&text));
            let q = "?".repeat(text.chars().count());
            prop_assert!(Glob::new(&q).matches(&text));
        }

        #[test]
        fn globs_agree_with_a_naive_matcher(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            fn naive(p: &[char], t: &[char]) -> bool {
                match (p.first(), t.first()) {
                    (None, _) => t.is_empty(),
                    (Some('*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
                    (Some(_), None) => false,
                    (Some(&c), Some(&d)) => (c == '?' || c == d) && naive(&p[1..], &t[1..]),
                }
            }
            let (pc, tc): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            prop_assert_eq!(Glob::new(&p).matches(&t), naive(&pc, &tc));
        }
    }
}
