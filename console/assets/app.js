// firstline web console: the little the pages need that HTML cannot do.
// No build step, no library, no inline script (the Content-Security-Policy
// forbids it): each section below finds its elements by id or data-
// attribute and does nothing on pages without them. Text from the relay is
// always written with textContent, never as HTML.
"use strict";

// ---- helpers ---------------------------------------------------------------

/** An element `tag` with class `cls` and text `text` (as text). */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** Parse an event's JSON data; null when it is not JSON. */
function parseData(ev) {
  try {
    return JSON.parse(ev.data);
  } catch (_) {
    return null;
  }
}

/** Run `fn` once the page is parsed. */
function ready(fn) {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fn);
  } else {
    fn();
  }
}

// ---- fleet: select all / none ---------------------------------------------

function setupChecks() {
  document.querySelectorAll("[data-check-all], [data-check-none]").forEach((b) => {
    const name = b.dataset.checkAll || b.dataset.checkNone;
    const on = b.hasAttribute("data-check-all");
    b.addEventListener("click", () => {
      document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach((c) => {
        c.checked = on;
      });
    });
  });
}

// ---- live: notices over server-sent events --------------------------------

function setupLive() {
  const list = document.getElementById("live");
  if (!list || !list.dataset.events) return;
  const status = document.getElementById("live-status");
  const empty = document.getElementById("live-empty");
  const agentFilter = document.getElementById("live-agent");
  const kindFilter = document.getElementById("live-kind");
  const MAX = 500;

  const shows = (item) => {
    const agent = agentFilter ? agentFilter.value.trim() : "";
    const kind = kindFilter ? kindFilter.value : "";
    if (agent && item.dataset.agent !== agent) return false;
    if (kind && item.dataset.group !== kind) return false;
    return true;
  };
  const refilter = () => {
    list.querySelectorAll("li").forEach((li) => {
      li.hidden = !shows(li);
    });
  };
  if (agentFilter) agentFilter.addEventListener("input", refilter);
  if (kindFilter) kindFilter.addEventListener("change", refilter);
  const form = document.getElementById("live-filter");
  if (form) form.addEventListener("submit", (e) => e.preventDefault());

  const setStatus = (state, text) => {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  };

  const source = new EventSource(list.dataset.events);
  source.addEventListener("status", (ev) => {
    const s = parseData(ev);
    if (s) setStatus(s.state, s.text);
  });
  source.addEventListener("notice", (ev) => {
    const n = parseData(ev);
    if (!n) return;
    const li = el("li", "notice notice-" + n.group);
    li.dataset.agent = n.agent || "";
    li.dataset.group = n.group;
    const time = el("time", "at", n.at);
    time.setAttribute("datetime", n.at);
    li.appendChild(time);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "kind kind-" + n.group, n.kind));
    if (n.agent) {
      li.appendChild(document.createTextNode(" "));
      const a = el("a", "agent", n.agent);
      a.href = "/machines/" + encodeURIComponent(n.agent);
      li.appendChild(a);
    }
    if (n.ticket !== null && n.ticket !== undefined) {
      li.appendChild(document.createTextNode(" "));
      const t = el("a", "ticket", "#" + n.ticket);
      t.href = "/tickets/" + encodeURIComponent(n.ticket);
      li.appendChild(t);
    }
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "text", n.text));
    li.hidden = !shows(li);
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX) list.removeChild(list.lastChild);
    if (empty) empty.hidden = true;
  });
  source.onerror = () => {
    setStatus("lost", "lost the web console's connection; reconnecting…");
  };
}

// ---- jobs: a running check, fix or runbook --------------------------------
// (the Machine and Tickets pages add their functions here and call them
// from the start section below)
//
// W2 — jobs, machine page, ticket page. An "item" is what the server sends
// (console/src/web/view.rs): kind, status, head, lines, verdict, summary;
// renderItem mirrors templates/item.html. Every action form (action
// "/actions") is sent with fetch and its job streamed into the page; without
// script the same form lands on the job's own page.

/** A status chip: the word, and a class for its colour. */
function chip(word, test) {
  const s = el("span", "status status-" + word, String(word).toUpperCase());
  if (test) s.dataset.test = test;
  return s;
}

/** One item as a list entry (see templates/item.html). */
function renderItem(item) {
  const li = el("li", "item item-" + item.kind);
  li.dataset.test = item.kind;
  if (item.agent) li.dataset.agent = item.agent;
  if (item.status) {
    li.appendChild(chip(item.status, "status"));
    li.appendChild(document.createTextNode(" "));
  }
  li.appendChild(el("span", "head", item.head));
  if (item.lines && item.lines.length) {
    const ul = el("ul", "lines");
    item.lines.forEach((l) => ul.appendChild(el("li", null, l)));
    li.appendChild(ul);
  }
  if (item.verdict) li.appendChild(renderVerdict(item.verdict));
  if (item.summary && item.summary.length) li.appendChild(renderSummary(item.summary));
  return li;
}

function renderVerdict(v) {
  const box = el("div", "verdict");
  box.dataset.test = "verdict";
  const p = el("p");
  p.appendChild(chip(v.kind, "verdict-kind"));
  if (v.dry_run) p.appendChild(el("span", "note", " (dry run: fixes were only planned)"));
  box.appendChild(p);
  const dl = el("dl");
  const row = (label, value, test) => {
    if (!value) return;
    dl.appendChild(el("dt", null, label));
    const dd = el("dd", null, value);
    if (test) dd.dataset.test = test;
    dl.appendChild(dd);
  };
  row("Cause", v.cause, "verdict-cause");
  row("Team", v.team, "verdict-team");
  row("For the technician", v.message, "verdict-message");
  row("For the user", v.user_message);
  row("Knowledge base", v.kb);
  box.appendChild(dl);
  box.appendChild(el("h4", null, "Evidence"));
  const ol = el("ol", "steps");
  ol.dataset.test = "verdict-steps";
  (v.steps || []).forEach((s) => {
    const li = el("li");
    li.appendChild(chip(s.status));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("strong", null, s.id));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("code", null, s.action));
    li.appendChild(document.createTextNode(": " + s.text));
    ol.appendChild(li);
  });
  box.appendChild(ol);
  return box;
}

function renderSummary(rows) {
  const table = el("table", "summary");
  table.dataset.test = "bulk-summary";
  const head = el("tr");
  ["Outcome", "Machines", "Which"].forEach((h) => {
    const th = el("th", null, h);
    th.scope = "col";
    head.appendChild(th);
  });
  const thead = el("thead");
  thead.appendChild(head);
  table.appendChild(thead);
  const body = el("tbody");
  rows.forEach((r) => {
    const tr = el("tr");
    const td = el("td");
    td.appendChild(chip(r.outcome));
    tr.appendChild(td);
    tr.appendChild(el("td", null, r.count));
    tr.appendChild(el("td", null, r.machines));
    body.appendChild(tr);
  });
  table.appendChild(body);
  return table;
}

const JOB_KINDS = ["progress", "result", "verdict", "bulk_started", "bulk_item", "queued", "summary", "done", "error"];

/** Follow a job's events into its <article class="job">; `onEnd(ok)` when it ends. */
function followJob(article, onEnd) {
  if (!article.dataset.events || article.dataset.ended === "true") return;
  const list = article.querySelector("ol.items");
  const state = article.querySelector(".job-state");
  const progress = article.querySelector(".bulk-progress");
  let selected = 0;
  let ended = 0;
  const setState = (word, text) => {
    state.dataset.state = word;
    state.textContent = text;
  };
  const source = new EventSource(article.dataset.events);
  JOB_KINDS.forEach((kind) => {
    source.addEventListener(kind, (ev) => {
      const item = parseData(ev);
      if (!item) return;
      list.appendChild(renderItem(item));
      if (kind === "bulk_started") selected += item.selected || 0;
      if (kind === "bulk_item") ended += 1;
      if (kind === "bulk_started" || kind === "bulk_item") {
        progress.hidden = false;
        progress.textContent = ended + " of " + selected + " machines done";
      }
      if (kind === "done" || kind === "error") {
        source.close();
        article.dataset.ended = "true";
        if (kind === "done") setState("done", "done");
        else setState(item.status || "failed", item.status === "refused" ? "refused" : "failed");
        if (onEnd) onEnd(kind === "done");
      }
    });
  });
  source.onopen = () => {
    if (article.dataset.ended !== "true") setState("running", "running…");
  };
  source.onerror = () => {
    if (article.dataset.ended !== "true") setState("lost", "connection lost; reconnecting…");
  };
}

/** A new job block at the top of `container` (after its heading). */
function newJob(container, job) {
  const article = el("article", "job");
  article.id = "job-" + job.job;
  article.dataset.test = "job";
  article.dataset.job = job.job;
  article.dataset.events = job.events;
  article.dataset.ended = "false";
  const h = el("h3");
  h.appendChild(el("span", "job-what", job.what || "action"));
  h.appendChild(document.createTextNode(" "));
  const state = el("span", "job-state", "starting…");
  state.dataset.test = "job-state";
  state.setAttribute("role", "status");
  h.appendChild(state);
  article.appendChild(h);
  const progress = el("p", "bulk-progress");
  progress.dataset.test = "bulk-progress";
  progress.hidden = true;
  article.appendChild(progress);
  const list = el("ol", "items");
  list.dataset.test = "job-items";
  list.setAttribute("aria-live", "polite");
  article.appendChild(list);
  const heading = container.querySelector("h2");
  if (heading && heading.parentNode === container) heading.after(article);
  else container.insertBefore(article, container.firstChild);
  const empty = document.getElementById("results-empty");
  if (empty) empty.hidden = true;
  return article;
}

/** Where a form's jobs go: its data-result element, else a section after it. */
function resultsFor(form) {
  let c = form.dataset.result ? document.getElementById(form.dataset.result) : null;
  if (!c) {
    c = document.getElementById("results");
  }
  if (!c) {
    c = el("section", "results");
    c.id = "results";
    c.dataset.test = "results";
    c.setAttribute("aria-label", "Results");
    form.after(c);
  }
  return c;
}

/** Send an action form with fetch; stream its job. */
function setupActionForms() {
  document.querySelectorAll('form[action="/actions"]').forEach((form) => {
    const real = form.querySelector("#fix-real");
    if (real) {
      // "Run for real" is offered only right after a dry run of these very fields.
      form.addEventListener("input", () => { real.hidden = true; });
    }
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const submitter = e.submitter || null;
      const body = new URLSearchParams(new FormData(form, submitter));
      const dry = body.get("dry_run") === "on";
      let err = form.querySelector(".form-error");
      if (!err) {
        err = el("p", "error-message form-error");
        err.setAttribute("role", "alert");
        err.dataset.test = "form-error";
        err.hidden = true;
        form.appendChild(err);
      }
      err.hidden = true;
      if (real) real.hidden = true;
      let answer;
      try {
        const r = await fetch("/actions", {
          method: "POST",
          headers: { Accept: "application/json" },
          body,
          credentials: "same-origin",
        });
        answer = await r.json();
      } catch (x) {
        answer = { error: "the web console did not answer: " + x };
      }
      if (!answer || !answer.job) {
        err.textContent = (answer && answer.error) || "the action was not started";
        err.hidden = false;
        return;
      }
      const article = newJob(resultsFor(form), answer);
      followJob(article, (ok) => {
        if (real && dry && ok) real.hidden = false;
      });
    });
  });
  // Jobs already on the page (the job's own page) that are still running.
  document.querySelectorAll("article.job[data-events]").forEach((a) => followJob(a));
}

/** The check form: show the chosen check's arguments. */
function setupCheckSynopsis() {
  const select = document.getElementById("check-name");
  const out = document.getElementById("check-synopsis");
  if (!select || !out || select.tagName !== "SELECT") return;
  const show = () => {
    const o = select.selectedOptions[0];
    out.textContent = o && o.dataset.synopsis ? "Usage: " + o.dataset.synopsis : "";
  };
  select.addEventListener("change", show);
  show();
}

/** One ticket entry (see templates/ticket.html). */
function renderEntry(e) {
  const li = el("li", "entry entry-" + e.kind);
  li.dataset.n = e.n;
  li.dataset.test = "entry";
  li.dataset.kind = e.kind;
  const meta = el("p", "entry-meta");
  meta.appendChild(el("time", null, e.when));
  if (e.arrived) meta.appendChild(el("span", "note", " (arrived " + e.arrived + ")"));
  meta.appendChild(document.createTextNode(" · "));
  meta.appendChild(el("span", "entry-kind", e.kind));
  meta.appendChild(document.createTextNode(" · "));
  meta.appendChild(el("span", "entry-author", e.author));
  li.appendChild(meta);
  const ol = el("ol", "items");
  ol.appendChild(renderItem(e.item));
  li.appendChild(ol);
  return li;
}

/** The ticket page: new entries and its state, live. */
function setupTicket() {
  const head = document.getElementById("ticket");
  const timeline = document.getElementById("timeline");
  if (!head || !timeline || !head.dataset.events) return;
  const live = document.getElementById("live-state");
  const say = (t) => { if (live) live.textContent = t; };
  const setText = (id, cls, value) => {
    const n = document.getElementById(id);
    if (!n) return;
    n.textContent = value;
    if (cls) n.className = cls;
  };
  const source = new EventSource(head.dataset.events);
  source.onopen = () => say("Live: changes show here as they happen.");
  source.onerror = () => say("Lost the live updates; reconnecting…");
  source.addEventListener("entry", (ev) => {
    const e = parseData(ev);
    if (!e || timeline.querySelector('[data-n="' + e.n + '"]')) return;
    timeline.appendChild(renderEntry(e));
  });
  source.addEventListener("ticket", (ev) => {
    const t = parseData(ev);
    if (!t) return;
    setText("ticket-title", null, t.title);
    setText("ticket-status", "tstatus tstatus-" + t.status, t.status);
    setText("ticket-priority", "priority priority-" + t.priority, t.priority);
    setText("ticket-assignee", null, t.assignee || "unassigned");
    setText("ticket-updated", null, t.updated);
    document.querySelectorAll("#status-buttons [data-when]").forEach((f) => {
      f.hidden = !f.dataset.when.split(" ").includes(t.status);
    });
  });
  source.addEventListener("lost", (ev) => {
    const m = parseData(ev);
    say("Live updates stopped: " + ((m && m.message) || "the relay went away") + "; retrying…");
  });
}


// ---- start -----------------------------------------------------------------

ready(() => {
  setupChecks();
  setupLive();
  // W2
  setupActionForms();
  setupCheckSynopsis();
  setupTicket();
});
