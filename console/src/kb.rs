//! `firstline kb search TEXT` and `firstline kb show ID`: the relay's
//! knowledge base (Markdown articles in its `kb/` folder) — what a
//! verdict's `kb` id points to (`ticket show` prints the id and this
//! command). The relay searches and keeps the articles; this file asks and
//! prints, the body as text, each line escaped for the terminal.

use crate::client::{classify, Client};
use crate::output;
use anyhow::{bail, Result};
use firstline_proto::kb::{KbArticle, KbHit};
use firstline_proto::text::printable;
use firstline_proto::Message;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum KbCommand {
    /// Articles whose title, tags or text contain every word of TEXT
    /// (case-insensitive; title matches first).
    Search {
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// One article, by id (a verdict's `kb`).
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cred: Option<PathBuf>, cmd: KbCommand) -> Result<i32> {
    let (msg, json, what) = match cmd {
        KbCommand::Search { text, json } => (
            Message::KbSearch {
                text: text.join(" "),
            },
            json,
            "firstline kb search",
        ),
        KbCommand::Show { id, json } => (Message::KbShow { id }, json, "firstline kb show"),
    };
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client.call(msg).await;
    client.close().await;
    match answer.map_err(|e| classify(e, Some(what)))? {
        Message::KbHits { hits } => {
            if json {
                output::json(&hits);
            } else {
                print_hits(&hits);
            }
            Ok(if hits.is_empty() { 1 } else { 0 })
        }
        Message::KbArticle(a) => {
            if json {
                output::json(&a);
            } else {
                for l in render(&a) {
                    output::line(l);
                }
            }
            Ok(0)
        }
        other => bail!("unexpected answer from the relay: {}", other.kind()),
    }
}

fn print_hits(hits: &[KbHit]) {
    if hits.is_empty() {
        output::line("no article matches");
        return;
    }
    let rows: Vec<Vec<String>> = hits
        .iter()
        .map(|h| vec![h.id.clone(), h.title.clone(), h.excerpt.clone()])
        .collect();
    output::table(&["ID", "TITLE", "MATCH"], &rows);
    output::line(format!(
        "\n{} article{} · read one: firstline kb show ID",
        hits.len(),
        if hits.len() == 1 { "" } else { "s" }
    ));
}

/// The article for a terminal: title, id and tags, then the body as it is
/// written (Markdown as text), every line escaped.
pub fn render(a: &KbArticle) -> Vec<String> {
    let mut lines = vec![printable(&a.title).into_owned()];
    let mut about = format!("id {}", printable(&a.id));
    if !a.tags.is_empty() {
        about.push_str(&format!(" · tags {}", printable(&a.tags.join(", "))));
    }
    lines.push(about);
    lines.push(String::new());
    lines.extend(a.body.lines().map(|l| printable(l).into_owned()));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_article_prints_as_escaped_text() {
        let a = KbArticle {
            id: "disk-full".into(),
            title: "The disk is full".into(),
            tags: vec!["disk".into(), "space".into()],
            body: "## What\n\u{1b}[2Jempty the trash".into(),
        };
        assert_eq!(
            render(&a),
            [
                "The disk is full",
                "id disk-full · tags disk, space",
                "",
                "## What",
                "\\u{1b}[2Jempty the trash"
            ]
        );
    }
}
