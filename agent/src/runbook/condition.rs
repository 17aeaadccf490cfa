//! `when` conditions of runbook steps, on the results of earlier steps:
//!
//! ```text
//! gateway.status != ok
//! state.queued_jobs > 0 and state.status == ok
//! dns.status == crit or dns.time_ms >= 500
//! ```
//! `or` binds looser than `and`. A condition on a step that did not run is
//! false.

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
    field: String,
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
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Status(Status),
    Number(f64),
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let any = text
            .split(" or ")
            .map(|alt| {
                alt.split(" and ")
                    .map(parse_test)
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Condition { any })
    }

    /// Step ids the condition looks at.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.any.iter().flatten().map(|t| t.step.as_str())
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
            Value::Number(n) => r.metrics.get(&self.field).is_some_and(|v| match self.op {
                Op::Eq => v == n,
                Op::Ne => v != n,
                Op::Lt => v < n,
                Op::Le => v <= n,
                Op::Gt => v > n,
                Op::Ge => v >= n,
            }),
        }
    }
}

fn parse_test(text: &str) -> Result<Test, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [lhs, op, rhs] = words[..] else {
        return Err(format!(
            "`{text}`: expected `STEP.FIELD OP VALUE`, e.g. `dns.status != ok`"
        ));
    };
    let (step, field) = lhs
        .split_once('.')
        .filter(|(s, f)| !s.is_empty() && !f.is_empty())
        .ok_or_else(|| format!("`{lhs}`: expected STEP.status or STEP.METRIC"))?;
    let op = match op {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        other => return Err(format!("`{other}`: unknown operator (use == != < <= > >=)")),
    };
    let value = if field == "status" {
        if !matches!(op, Op::Eq | Op::Ne) {
            return Err(format!("`{text}`: a status compares with == or != only"));
        }
        Value::Status(match rhs {
            "ok" => Status::Ok,
            "warn" => Status::Warn,
            "crit" => Status::Crit,
            "unknown" => Status::Unknown,
            other => return Err(format!("`{other}`: a status is ok, warn, crit or unknown")),
        })
    } else {
        Value::Number(
            rhs.parse()
                .map_err(|_| format!("`{rhs}`: a metric compares with a number"))?,
        )
    };
    Ok(Test {
        step: step.into(),
        field: field.into(),
        op,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> HashMap<String, CheckResult> {
        let dns = CheckResult::new("dns", "x", Status::Crit, "timeout").metric("time_ms", 900.0);
        [("dns".to_string(), dns)].into()
    }

    #[test]
    fn evaluates_status_metrics_and_or() {
        let r = results();
        assert!(Condition::parse("dns.status != ok").unwrap().eval(&r));
        assert!(!Condition::parse("dns.status == ok").unwrap().eval(&r));
        assert!(
            Condition::parse("dns.time_ms >= 500 and dns.status == crit")
                .unwrap()
                .eval(&r)
        );
        assert!(Condition::parse("dns.status == ok or dns.time_ms > 800")
            .unwrap()
            .eval(&r));
        assert!(
            !Condition::parse("gateway.status != ok").unwrap().eval(&r),
            "step that did not run"
        );
        assert!(!Condition::parse("dns.missing > 1").unwrap().eval(&r));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "dns",
            "dns.status",
            "dns.status > ok",
            "dns.status == fine",
            "dns.time_ms > fast",
            ".status == ok",
            "a.b ~ 3",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
    }
}
