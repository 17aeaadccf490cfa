//! `/kb/ID`: one knowledge-base article, the page a verdict's `kb` id links
//! to on a ticket. Asked of the relay (`kb_show`, audited, viewers up) like
//! every page; the Markdown body is shown as written, escaped, in a
//! preformatted block — never rendered, so an article file can put no HTML
//! or script on the page. An unknown id is a 404 with the relay's words
//! (the close ids).

use super::{render, text, AppState, Nav, WebError};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use firstline_proto::kb::{valid_id, KbArticle};
use firstline_proto::{ErrorCode, Message};

pub fn routes() -> Router<AppState> {
    Router::new().route("/kb/{id}", get(page))
}

/// The article, its text made safe (each body line escaped on its own, so
/// the lines stay lines).
pub struct ArticleView {
    pub id: String,
    pub title: String,
    pub tags: String,
    pub body: String,
}

impl ArticleView {
    pub fn of(a: &KbArticle) -> ArticleView {
        ArticleView {
            id: text(&a.id),
            title: text(&a.title),
            tags: text(&a.tags.join(", ")),
            body: a.body.lines().map(text).collect::<Vec<_>>().join("\n"),
        }
    }
}

#[derive(Template)]
#[template(path = "kb.html")]
struct KbPage {
    nav: Nav,
    a: ArticleView,
}

async fn page(State(web): State<AppState>, Path(id): Path<String>) -> Result<Response, WebError> {
    let nav = web.nav("tickets").await?;
    if !valid_id(&id) {
        return Err(WebError::NotFound(format!(
            "`{}` is no article id",
            text(&id)
        )));
    }
    let answers = match web.ask(Message::KbShow { id }).await {
        Err(WebError::Relay {
            code: ErrorCode::BadRequest,
            message,
        }) => return Err(WebError::NotFound(message)),
        other => other?,
    };
    let a = answers
        .iter()
        .find_map(|m| match m {
            Message::KbArticle(a) => Some(ArticleView::of(a)),
            _ => None,
        })
        .ok_or_else(|| WebError::Internal("the relay sent no article".into()))?;
    render(&KbPage { nav, a })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_escaped_text() {
        let a = KbArticle {
            id: "x".into(),
            title: "<b>T</b>".into(),
            tags: vec![],
            body: "line one\n<script>alert(1)</script>\u{1b}[2J".into(),
        };
        let v = ArticleView::of(&a);
        assert_eq!(v.body, "line one\n<script>alert(1)</script>\\u{1b}[2J");
        let html = KbPage {
            nav: Nav {
                operator: "op".into(),
                role: firstline_proto::Role::Viewer,
                page: "tickets",
            },
            a: v,
        }
        .render()
        .unwrap();
        assert!(html.contains("&#60;script&#62;alert(1)"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<b>T"), "{html}");
    }
}
