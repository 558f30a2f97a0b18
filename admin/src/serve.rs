//! `serve`: a status page of the outbox, served by `tiny_http` on
//! 127.0.0.1 by default. Read-only unless `--allow-requeue` is given with
//! a token in `REQPOOL_OUTBOX_TOKEN`; the token is typed into the page
//! by the operator and never shown, and no secret is on the page (the
//! outbox stores none; requests are redacted; a Redis URL is not shown).

use crate::Failure;
use reqpool::{DeadJob, JobId, Outbox, OutboxHealth, OutboxStats};
use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response, Server};

/// The environment variable that holds the requeue token.
pub(crate) const TOKEN_VAR: &str = "REQPOOL_OUTBOX_TOKEN";

/// The shortest token taken: a guessable one would make the button
/// anyone's.
const TOKEN_MIN: usize = 16;

/// How far back the delivery rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The largest form body read.
const BODY_MAX: u64 = 4096;

/// The most requests answered at once, each on a thread of its own (a
/// form whose body never comes holds only its own); past it, a 503.
const AT_ONCE: usize = 16;

/// What `serve` was asked for.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    /// `host:port`; port 0 takes a free one.
    pub(crate) listen: String,
    /// This process delivers the outbox's jobs (a file is one process's:
    /// with its program stopped, the page's process delivers).
    pub(crate) deliver: bool,
    /// A 410 Gone pauses its endpoint (with `deliver`).
    pub(crate) pause_on_gone: bool,
    /// Requeue (and resume) buttons, with the token of `TOKEN_VAR`.
    pub(crate) allow_requeue: bool,
    /// What the page calls the outbox (a file's path, a stream's name).
    pub(crate) title: String,
}

/// The page's state between requests.
struct Page {
    title: String,
    /// The requeue token, if requeue is allowed.
    token: Option<String>,
    /// Deliveries seen, for the rate: (when, delivered).
    samples: Mutex<VecDeque<(Instant, u64)>>,
    /// The `Host` header values this server answers (DNS rebinding).
    hosts: Vec<String>,
}

/// Serves the page until killed. Prints `listening on http://ADDR/` on
/// stdout first.
pub(crate) fn run(outbox: Outbox, options: ServeOptions) -> Result<(), Failure> {
    let token = if options.allow_requeue {
        let t = std::env::var(TOKEN_VAR).unwrap_or_default();
        if t.len() < TOKEN_MIN {
            return Err(Failure::new(
                crate::USAGE,
                format!(
                    "--allow-requeue needs a token of at least {TOKEN_MIN} characters in {TOKEN_VAR}"
                ),
            ));
        }
        Some(t)
    } else {
        None
    };
    let server = Server::http(&options.listen).map_err(|e| {
        Failure::new(
            crate::OTHER,
            format!("cannot listen on {}: {e}", options.listen),
        )
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Failure::new(crate::OTHER, "not an IP address"))?;
    let port = addr.port();
    let mut hosts = vec![addr.to_string(), format!("localhost:{port}")];
    if addr.ip().is_unspecified() {
        hosts.clear(); // bound to every address: any Host
    }
    println!("listening on http://{addr}/");
    let page = Arc::new(Page {
        title: options.title,
        token,
        samples: Mutex::new(VecDeque::new()),
        hosts,
    });
    let outbox = Arc::new(outbox);
    let busy = Arc::new(AtomicUsize::new(0));
    loop {
        // A request, or a tick of a second for the rate's samples.
        let req = server
            .recv_timeout(Duration::from_secs(1))
            .map_err(|e| Failure::new(crate::OTHER, format!("serving: {e}")))?;
        page.sample(&outbox);
        let Some(req) = req else { continue };
        // Each request on a thread of its own: a client that stalls in
        // the middle of a form holds its own thread, not the page.
        if busy.fetch_add(1, Ordering::AcqRel) >= AT_ONCE {
            busy.fetch_sub(1, Ordering::AcqRel);
            let r = Response::from_string(plain_page("Busy", "too many requests at once"))
                .with_status_code(503)
                .with_header(header("Content-Type", "text/html; charset=utf-8"));
            let _ = req.respond(r);
            continue;
        }
        let (page, outbox, done) = (
            Arc::clone(&page),
            Arc::clone(&outbox),
            Busy(Arc::clone(&busy)),
        );
        let spawned = std::thread::Builder::new()
            .name("reqpool-outbox-page".into())
            .spawn(move || {
                let _done = done;
                // One request's panic is one 500, logged; the server goes on.
                let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    page.answer(&outbox, req)
                }));
                if answered.is_err() {
                    eprintln!("reqpool-outbox: a request of the status page panicked; serving on");
                }
            });
        if let Err(e) = spawned {
            // The request is dropped unanswered (tiny_http closes it).
            eprintln!("reqpool-outbox: no thread for a request of the status page: {e}");
        }
    }
}

/// One request being answered; counted down when its thread ends,
/// however it ends.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Page {
    fn sample(&self, outbox: &Outbox) {
        if let Ok(s) = outbox.stats() {
            let now = Instant::now();
            let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
            samples.push_back((now, s.delivered));
            while samples
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RATE_WINDOW)
            {
                samples.pop_front();
            }
        }
    }

    /// Deliveries per second over the window, if it has two samples.
    fn rate(&self) -> Option<f64> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let ((t0, d0), (t1, d1)) = (samples.front()?, samples.back()?);
        let secs = t1.saturating_duration_since(*t0).as_secs_f64();
        (secs > 0.5).then(|| d1.saturating_sub(*d0) as f64 / secs)
    }

    fn answer(&self, outbox: &Outbox, mut req: Request) {
        let host_ok = self.hosts.is_empty()
            || req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Host"))
                .is_some_and(|h| self.hosts.iter().any(|a| a == h.value.as_str()));
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let (status, body) = if !host_ok {
            (
                421,
                plain_page(
                    "Misdirected request",
                    "this page answers only at its own address",
                ),
            )
        } else {
            match (req.method(), path.as_str()) {
                (Method::Get, "/") => (200, self.render(outbox, req.url())),
                (Method::Post, "/requeue") => match self.requeue(outbox, &mut req) {
                    Ok(id) => {
                        let to = format!("/?requeued={id}");
                        let r = Response::from_string("")
                            .with_status_code(303)
                            .with_header(header("Location", &to));
                        let _ = req.respond(r);
                        return;
                    }
                    Err((code, why)) => (code, plain_page("Not requeued", &why)),
                },
                (Method::Post, "/resume") => match self.resume(outbox, &mut req) {
                    Ok(()) => {
                        let r = Response::from_string("")
                            .with_status_code(303)
                            .with_header(header("Location", "/?resumed=1"));
                        let _ = req.respond(r);
                        return;
                    }
                    Err((code, why)) => (code, plain_page("Not resumed", &why)),
                },
                (Method::Get | Method::Post, _) => (404, plain_page("Not found", "nothing here")),
                _ => (
                    405,
                    plain_page("Method not allowed", "GET / or POST /requeue"),
                ),
            }
        };
        let r = Response::from_string(body)
            .with_status_code(status)
            .with_header(header("Content-Type", "text/html; charset=utf-8"))
            .with_header(header("Cache-Control", "no-store"))
            .with_header(header("X-Frame-Options", "DENY"));
        let _ = req.respond(r);
    }

    /// The fields of a posted form, once its token is checked.
    fn form(&self, req: &mut Request) -> Result<Vec<(String, String)>, (u16, String)> {
        let Some(token) = &self.token else {
            return Err((
                403,
                "this page is read-only (serve --allow-requeue to allow requeue)".into(),
            ));
        };
        let mut body = String::new();
        req.as_reader()
            .take(BODY_MAX)
            .read_to_string(&mut body)
            .map_err(|_| (400, "the form could not be read".to_string()))?;
        let fields: Vec<(String, String)> = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), decode_form(v)))
            .collect();
        let given = field(&fields, "token").unwrap_or_default();
        if !same(given.as_bytes(), token.as_bytes()) {
            return Err((403, "wrong token".into()));
        }
        Ok(fields)
    }

    /// Requeues the job of the form; its id, or a status and why.
    fn requeue(&self, outbox: &Outbox, req: &mut Request) -> Result<i64, (u16, String)> {
        let fields = self.form(req)?;
        let id = field(&fields, "id")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or((400, "no job id".to_string()))?;
        match outbox.requeue(JobId(id)) {
            Ok(true) => Ok(id),
            Ok(false) => Err((404, format!("job {id} is not dead"))),
            Err(e) => Err((503, e.to_string())),
        }
    }

    /// Resumes the endpoint of the form.
    fn resume(&self, outbox: &Outbox, req: &mut Request) -> Result<(), (u16, String)> {
        let fields = self.form(req)?;
        let url = field(&fields, "url").ok_or((400, "no endpoint".to_string()))?;
        if outbox.resume(&url) {
            Ok(())
        } else {
            Err((404, "that endpoint is not paused".into()))
        }
    }

    fn render(&self, outbox: &Outbox, url: &str) -> String {
        let stats = outbox.stats();
        let dead = outbox.dead();
        let health = outbox.health();
        let mut h = String::with_capacity(8192);
        h.push_str(&format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>outbox {t}</title><style>{CSS}</style></head><body>\
             <h1>Outbox <code>{t}</code></h1>",
            t = escape(&self.title)
        ));
        if let Some(id) = url.split("requeued=").nth(1) {
            let id: String = id.chars().take_while(char::is_ascii_digit).collect();
            h.push_str(&format!(
                "<p class=\"note\" id=\"flash\">Job {id} requeued.</p>"
            ));
        }
        match &stats {
            Ok(s) => counts(&mut h, s, self.rate()),
            Err(e) => h.push_str(&format!(
                "<p class=\"error\" id=\"store-error\">{}</p>",
                escape(&e.to_string())
            )),
        }
        health_table(&mut h, &health);
        let paused = outbox.paused();
        if !paused.is_empty() {
            h.push_str("<h2>Paused endpoints (410 Gone)</h2><ul id=\"paused\">");
            for url in &paused {
                h.push_str(&format!("<li><code>{}</code>", escape(url)));
                if self.token.is_some() {
                    h.push_str(&format!(
                        " <form method=\"post\" action=\"/resume\"><input type=\"hidden\" name=\"url\" value=\"{}\">\
                         <input type=\"password\" name=\"token\" placeholder=\"token\" autocomplete=\"off\">\
                         <button type=\"submit\">resume</button></form>",
                        escape(url)
                    ));
                }
                h.push_str("</li>");
            }
            h.push_str("</ul>");
        }
        match &dead {
            Ok(dead) => self.dead_tables(&mut h, dead),
            Err(e) => h.push_str(&format!(
                "<p class=\"error\">{}</p>",
                escape(&e.to_string())
            )),
        }
        h.push_str(if self.token.is_some() {
            "<p class=\"mode\" id=\"mode\">Requeue allowed, with the token.</p>"
        } else {
            "<p class=\"mode\" id=\"mode\">Read-only.</p>"
        });
        h.push_str("</body></html>");
        h
    }

    fn dead_tables(&self, h: &mut String, dead: &[DeadJob]) {
        let mut per_host: BTreeMap<String, u64> = BTreeMap::new();
        for d in dead {
            *per_host.entry(host_of(&d.request)).or_default() += 1;
        }
        h.push_str("<h2>Dead per host</h2><table id=\"hosts\"><tr><th>host</th><th>dead</th></tr>");
        for (host, n) in &per_host {
            h.push_str(&format!("<tr><td>{}</td><td>{n}</td></tr>", escape(host)));
        }
        h.push_str("</table><h2>Dead letters</h2><table id=\"dead-letters\"><tr><th>id</th><th>attempts</th><th>request</th><th>last error</th>");
        if self.token.is_some() {
            h.push_str("<th></th>");
        }
        h.push_str("</tr>");
        for d in dead.iter().take(500) {
            h.push_str(&format!(
                "<tr id=\"job-{id}\"><td>{id}</td><td>{a}</td><td><code>{r}</code></td><td>{e}</td>",
                id = d.id.0,
                a = d.attempts,
                r = escape(&d.request),
                e = escape(&d.last_error)
            ));
            if self.token.is_some() {
                h.push_str(&format!(
                    "<td><form method=\"post\" action=\"/requeue\"><input type=\"hidden\" name=\"id\" value=\"{id}\">\
                     <input type=\"password\" name=\"token\" placeholder=\"token\" autocomplete=\"off\">\
                     <button type=\"submit\" id=\"requeue-{id}\">requeue</button></form></td>",
                    id = d.id.0
                ));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        if dead.len() > 500 {
            h.push_str(&format!(
                "<p>{} more: <code>reqpool-outbox dead</code>.</p>",
                dead.len() - 500
            ));
        }
    }
}

fn counts(h: &mut String, s: &OutboxStats, rate: Option<f64>) {
    h.push_str("<table id=\"counts\"><tr><th>pending</th><th>in flight</th><th>delivered</th><th>dead</th><th>delivered/s (10 s)</th></tr>");
    let rate = rate.map_or("–".to_string(), |r| format!("{r:.1}"));
    h.push_str(&format!(
        "<tr><td id=\"pending\">{}</td><td id=\"in-flight\">{}</td><td id=\"delivered\">{}</td><td id=\"dead\">{}</td><td id=\"rate\">{rate}</td></tr></table>",
        s.pending, s.in_flight, s.delivered, s.dead
    ));
}

fn health_table(h: &mut String, x: &OutboxHealth) {
    let age =
        |d: Option<Duration>| d.map_or("–".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    h.push_str(&format!(
        "<h2>Health</h2><table id=\"health\">\
         <tr><th>delivering (this process)</th><td id=\"delivering\">{}</td></tr>\
         <tr><th>oldest due</th><td>{}</td></tr>\
         <tr><th>store errors</th><td>{}</td></tr>\
         <tr><th>last error</th><td>{}</td></tr></table>",
        if x.delivering { "yes" } else { "no" },
        age(x.oldest_due),
        x.store_errors,
        x.last_error.as_deref().map_or("–".to_string(), escape),
    ));
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// `scheme://host:port` of a redacted request (`METHOD URL`).
fn host_of(request: &str) -> String {
    let url = request.split_whitespace().nth(1).unwrap_or(request);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            format!("{scheme}://{}", rest.split(['/', '?']).next().unwrap_or(""))
        }
        None => url.to_string(),
    }
}

fn plain_page(title: &str, why: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>{CSS}</style></head>\
         <body><h1>{title}</h1><p id=\"why\">{}</p><p><a href=\"/\">back</a></p></body></html>",
        escape(why)
    )
}

fn header(name: &str, value: &str) -> Header {
    // Both are ASCII this module writes: cannot fail.
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| unreachable!("ASCII header"))
}

/// Text in HTML (an element or an attribute in double quotes).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A form value: `+` is a space, `%XX` a byte.
fn decode_form(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.2em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:14px}th{background:#f3f3f3}\
#counts td{font-size:22px;text-align:right}.error{color:#a00}.note{color:#060}.mode{color:#666}code{font-size:13px}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_hosts_and_tokens() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            host_of("POST http://127.0.0.1:80/gone?x=1"),
            "http://127.0.0.1:80"
        );
        assert_eq!(decode_form("a+b%21"), "a b!");
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
