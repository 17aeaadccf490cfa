//! Conditions of a runbook's branches, on the results of steps that ran:
//!
//! ```text
//! gateway.status != ok
//! state.queued_jobs > 0 and state.state == 3
//! dns.error == nxdomain or dns.time_ms >= 500
//! state.reasons contains media-empty
//! link.error == ''
//! ```
//! `STEP.status` compares with `ok`, `warn`, `crit` or `unknown`; a number
//! compares with the step's metric of that name; a word or a quoted text
//! (`'…'`) compares with its field of that name (`summary`, `target` and
//! `check` are fields too) — a missing field is the empty text — with `==`,
//! `!=` or `contains`. `or` binds looser than `and`. A test on a step that
//! did not run is false.

use firstline_proto::{CheckResult, Status};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Alternatives (or) of conjunctions (and).
    any: Vec<Vec<Test>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Test {
    step: String,
    key: String,
    op: Op,
    value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Status(Status),
    Number(f64),
    Text(String),
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let words = tokens(text)?;
        let mut any = vec![vec![]];
        let mut rest = &words[..];
        loop {
            let (test, after) = match rest {
                [lhs, op, rhs, after @ ..] => (parse_test(lhs, op, rhs)?, after),
                _ => {
                    return Err(format!(
                        "`{text}`: expected `STEP.KEY OP VALUE`, e.g. `dns.status != ok`"
                    ))
                }
            };
            if let Some(all) = any.last_mut() {
                all.push(test);
            }
            match after {
                [] => break,
                [Token::Word(w), more @ ..] if w == "and" => rest = more,
                [Token::Word(w), more @ ..] if w == "or" => {
                    any.push(vec![]);
                    rest = more;
                }
                _ => return Err(format!("`{text}`: join tests with `and` or `or`")),
            }
        }
        Ok(Condition { any })
    }

    /// Step ids the condition looks at.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.any.iter().flatten().map(|t| t.step.as_str())
    }

    /// Whether every alternative of the condition requires `STEP.status ==
    /// ok` of a step `passes` accepts: the condition cannot hold unless
    /// one of those steps passed (what a `resolved` leaf needs).
    pub fn requires_ok(&self, passes: impl Fn(&str) -> bool) -> bool {
        self.any.iter().all(|all| {
            all.iter().any(|t| {
                t.key == "status"
                    && t.op == Op::Eq
                    && t.value == Value::Status(Status::Ok)
                    && passes(&t.step)
            })
        })
    }

    pub fn eval(&self, results: &HashMap<String, CheckResult>) -> bool {
        self.any.iter().any(|all| {
            all.iter()
                .all(|t| results.get(&t.step).is_some_and(|r| t.holds(r)))
        })
    }
}

impl Test {
    fn holds(&self, r: &CheckResult) -> bool {
        match &self.value {
            Value::Status(s) => match self.op {
                Op::Eq => r.status == *s,
                _ => r.status != *s,
            },
            Value::Number(n) => r.metrics.get(&self.key).is_some_and(|v| match self.op {
                Op::Eq => v == n,
                Op::Ne => v != n,
                Op::Lt => v < n,
                Op::Le => v <= n,
                Op::Gt => v > n,
                Op::Ge => v >= n,
                Op::Contains => false,
            }),
            Value::Text(t) => {
                let field = text_of(r, &self.key);
                match self.op {
                    Op::Eq => field == *t,
                    Op::Ne => field != *t,
                    _ => field.contains(t.as_str()),
                }
            }
        }
    }
}

/// A result's text field `key` ("" when it has none).
fn text_of<'a>(r: &'a CheckResult, key: &str) -> &'a str {
    match key {
        "summary" => &r.summary,
        "target" => &r.target,
        "check" => &r.check,
        other => r.fields.get(other).map_or("", String::as_str),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
}

/// Words, and `'quoted text'` (which may hold spaces).
fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => s.push(c),
                    None => return Err(format!("`{text}`: a quote is not closed")),
                }
            }
            out.push(Token::Quoted(s));
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '\'' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(Token::Word(s));
        }
    }
    Ok(out)
}

fn parse_test(lhs: &Token, op: &Token, rhs: &Token) -> Result<Test, String> {
    let Token::Word(lhs) = lhs else {
        return Err("a test starts with STEP.KEY".into());
    };
    let (step, key) = lhs
        .split_once('.')
        .filter(|(s, k)| !s.is_empty() && !k.is_empty())
        .ok_or_else(|| format!("`{lhs}`: expected STEP.status, STEP.METRIC or STEP.FIELD"))?;
    let op = match op {
        Token::Word(w) => match w.as_str() {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "contains" => Op::Contains,
            other => {
                return Err(format!(
                    "`{other}`: unknown operator (use == != < <= > >= contains)"
                ))
            }
        },
        Token::Quoted(q) => return Err(format!("`'{q}'`: expected an operator")),
    };
    let equality = matches!(op, Op::Eq | Op::Ne);
    let value = match rhs {
        Token::Quoted(q) => Value::Text(q.clone()),
        Token::Word(w) if key == "status" => {
            if !equality {
                return Err(format!("`{lhs}`: a status compares with == or != only"));
            }
            Value::Status(match w.as_str() {
                "ok" => Status::Ok,
                "warn" => Status::Warn,
                "crit" => Status::Crit,
                "unknown" => Status::Unknown,
                other => return Err(format!("`{other}`: a status is ok, warn, crit or unknown")),
            })
        }
        Token::Word(w) => match w.parse::<f64>() {
            Ok(n) if op != Op::Contains => Value::Number(n),
            _ => Value::Text(w.clone()),
        },
    };
    if matches!(value, Value::Text(_)) && !(equality || op == Op::Contains) {
        return Err(format!("`{lhs}`: a text compares with ==, != or contains"));
    }
    Ok(Test {
        step: step.into(),
        key: key.into(),
        op,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> HashMap<String, CheckResult> {
        let dns = CheckResult::new("dns", "x", Status::Crit, "no answer within 2 s")
            .metric("time_ms", 900.0)
            .field("error", "timeout");
        let printer = CheckResult::new("printer", "q", Status::Crit, "stopped")
            .metric("state", 5.0)
            .field("reasons", "media-empty-error,paused");
        [("dns".to_string(), dns), ("state".to_string(), printer)].into()
    }

    #[test]
    fn evaluates_status_metrics_fields_and_or() {
        let r = results();
        let holds = |c: &str| Condition::parse(c).unwrap().eval(&r);
        assert!(holds("dns.status != ok"));
        assert!(!holds("dns.status == ok"));
        assert!(holds("dns.time_ms >= 500 and dns.status == crit"));
        assert!(holds("dns.status == ok or dns.time_ms > 800"));
        assert!(!holds("gateway.status != ok"), "step that did not run");
        assert!(!holds("dns.missing > 1"));
        assert!(holds("dns.error == timeout"));
        assert!(holds("dns.error != nxdomain"));
        assert!(holds("state.reasons contains media-empty"));
        assert!(!holds("state.reasons contains toner"));
        assert!(holds(
            "state.state == 5 and state.reasons contains 'paused'"
        ));
        assert!(holds("dns.summary contains 'no answer'"));
        assert!(holds("state.error == ''"), "a missing field is empty");
    }

    #[test]
    fn tells_whether_every_alternative_needs_a_step_to_pass() {
        let req = |c: &str, step: &str| Condition::parse(c).unwrap().requires_ok(|s| s == step);
        assert!(req("a.status == ok", "a"));
        assert!(req("a.status == ok and b.x > 0", "a"));
        assert!(req(
            "a.status == ok and b.x > 0 or c.y == 1 and a.status == ok",
            "a"
        ));
        assert!(
            !req("a.status == ok or b.x > 0", "a"),
            "the second alternative needs nothing"
        );
        assert!(!req("a.status != crit", "a"));
        assert!(!req("b.status == ok", "a"));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "dns",
            "dns.status",
            "dns.status > ok",
            "dns.status == fine",
            "dns.error > fast",
            ".status == ok",
            "a.b ~ 3",
            "a.b == 'open",
            "a.b == 1 also c.d == 2",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
    }
}
