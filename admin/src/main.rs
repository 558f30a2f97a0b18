//! `reqpool-outbox`: look at and mend a reqpool outbox from a shell, on
//! its SQLite file or its Redis stream, through the outbox's public API
//! only. See `reqpool-outbox --help` and the README's "Operating an
//! outbox" section.
//!
//! Exit codes, for scripts:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the job named is not there (or, for `requeue`, not dead) |
//! | 2 | the command line is wrong |
//! | 3 | the store cannot be used: no such file, an empty file, a file in use by its program, not an outbox, a Redis that does not answer |
//! | 4 | any other failure |

mod args;
mod serve;

use args::{Command, Store};
use reqpool::{Error, JobId, Outbox, OutboxOptions, Pool, StorageKind};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// The exit codes of the table above.
const OK: u8 = 0;
const NOT_FOUND: u8 = 1;
const USAGE: u8 = 2;
const STORE: u8 = 3;
const OTHER: u8 = 4;

/// A failure and the exit code that says what kind it is.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    /// A store's errors are code 3, the others 4. The library's messages
    /// show no secret (a Redis password is hidden).
    fn from(e: Error) -> Failure {
        let code = match &e {
            Error::Storage { .. } => STORE,
            Error::Usage { .. } => USAGE,
            _ => OTHER,
        };
        Failure::new(code, e.to_string())
    }
}

fn main() -> ExitCode {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{}", args::HELP);
            return ExitCode::from(OK);
        }
        Err(why) => {
            eprintln!("reqpool-outbox: {why}\n\n{}", args::USAGE_LINE);
            return ExitCode::from(USAGE);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::from(OK),
        Err(f) => {
            eprintln!("reqpool-outbox: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Opens the store; without `deliver`, this command only looks and mends
/// and the program that owns the outbox delivers.
fn open(store: &Store, pool: &Pool, deliver: bool, pause_on_gone: bool) -> Result<Outbox, Failure> {
    let options = OutboxOptions::new()
        .deliver(deliver)
        .pause_on_gone(pause_on_gone);
    match store {
        Store::File(path) => {
            if !path.exists() {
                return Err(Failure::new(
                    STORE,
                    format!(
                        "{}: no such file (an outbox file is made by its program)",
                        path.display()
                    ),
                ));
            }
            // SQLite takes an empty file for a new database: opening it
            // would write an outbox into a file this command was only to
            // look at (a `touch`ed or truncated path).
            if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
                return Err(Failure::new(
                    STORE,
                    format!(
                        "{}: an empty file, not an outbox (an outbox file is made by its program)",
                        path.display()
                    ),
                ));
            }
            options.open(path, pool).map_err(|e| {
                let in_use = matches!(&e, Error::Storage { kind: StorageKind::InUse, .. });
                let mut f = Failure::from(e);
                if in_use {
                    f.message.push_str(
                        " (a file is one process's at a time: stop its program, or use the status page it serves)",
                    );
                }
                f
            })
        }
        Store::Redis { url, stream } => Ok(options.redis(url, stream, pool)?),
    }
}

fn run(command: Command) -> Result<(), Failure> {
    let pool = Pool::new(if command.delivers() { 8 } else { 1 });
    let outbox = open(
        command.store(),
        &pool,
        command.delivers(),
        command.pauses_on_gone(),
    )?;
    let mut out = std::io::stdout().lock();
    let w = |r: std::io::Result<()>| {
        r.map_err(|e| Failure::new(OTHER, format!("writing the output: {e}")))
    };
    match command {
        Command::Stats { .. } => {
            let s = outbox.stats()?;
            w(writeln!(
                out,
                "pending {}\nin_flight {}\ndelivered {}\ndead {}",
                s.pending, s.in_flight, s.delivered, s.dead
            ))?;
        }
        Command::Dead { limit, .. } => {
            let dead = outbox.dead()?;
            for d in dead.iter().take(limit.unwrap_or(usize::MAX)) {
                w(writeln!(
                    out,
                    "{}\t{} attempt(s)\t{}\t{}",
                    d.id.0,
                    d.attempts,
                    d.request,
                    one_line(&d.last_error)
                ))?;
            }
        }
        Command::Show { id, .. } => {
            if let Some(d) = outbox.dead()?.into_iter().find(|d| d.id.0 == id) {
                w(writeln!(
                    out,
                    "id {}\nstate dead\nkey {}\nrequest {}\nattempts {}\nlast_error {}",
                    d.id.0,
                    d.key,
                    d.request,
                    d.attempts,
                    one_line(&d.last_error)
                ))?;
            } else if let Some(r) = outbox.reply(JobId(id))? {
                w(writeln!(
                    out,
                    "id {id}\nstate delivered\nstatus {}\nbody_bytes {}{}\nbody {}",
                    r.status,
                    r.body.len(),
                    if r.cut { " (cut)" } else { "" },
                    one_line(&String::from_utf8_lossy(&r.body[..r.body.len().min(4096)]))
                ))?;
            } else {
                return Err(Failure::new(
                    NOT_FOUND,
                    format!(
                        "job {id}: not dead and no reply kept (pending, in flight, delivered without a kept reply, or unknown)"
                    ),
                ));
            }
        }
        Command::Requeue { id: Some(id), .. } => {
            if !outbox.requeue(JobId(id))? {
                return Err(Failure::new(NOT_FOUND, format!("job {id} is not dead")));
            }
            w(writeln!(out, "requeued {id}"))?;
        }
        Command::Requeue { id: None, .. } => {
            let mut n = 0;
            for d in outbox.dead()? {
                if outbox.requeue(d.id)? {
                    n += 1;
                }
            }
            w(writeln!(out, "requeued {n}"))?;
        }
        Command::Forget { id, .. } => {
            if !outbox.forget(JobId(id))? {
                return Err(Failure::new(
                    NOT_FOUND,
                    format!(
                        "job {id}: not delivered or dead (pending and in-flight jobs stay), or unknown"
                    ),
                ));
            }
            w(writeln!(out, "forgot {id}"))?;
        }
        Command::Tail { every, .. } => tail(&outbox, every, &mut out)?,
        Command::Serve { options, .. } => {
            drop(out);
            serve::run(outbox, options)?;
        }
    }
    Ok(())
}

/// Follows deliveries: a line per change of the counts, a line per new
/// dead letter; until killed (or stdout closes).
fn tail(outbox: &Outbox, every: Duration, out: &mut impl Write) -> Result<(), Failure> {
    let mut last = outbox.stats()?;
    let mut seen: std::collections::HashSet<i64> = outbox.dead()?.iter().map(|d| d.id.0).collect();
    let closed = |e: std::io::Error| Failure::new(OK, format!("output closed: {e}"));
    writeln!(
        out,
        "pending {} in_flight {} delivered {} dead {}",
        last.pending, last.in_flight, last.delivered, last.dead
    )
    .map_err(closed)?;
    out.flush().map_err(closed)?;
    loop {
        std::thread::sleep(every);
        let s = match outbox.stats() {
            Ok(s) => s,
            Err(e) => {
                // A store that is down for a moment: say so, go on.
                eprintln!("reqpool-outbox: {e}");
                continue;
            }
        };
        if (s.pending, s.in_flight, s.delivered, s.dead)
            != (last.pending, last.in_flight, last.delivered, last.dead)
        {
            writeln!(
                out,
                "pending {} in_flight {} delivered {} (+{}) dead {}",
                s.pending,
                s.in_flight,
                s.delivered,
                s.delivered.saturating_sub(last.delivered),
                s.dead
            )
            .map_err(closed)?;
        }
        if s.dead != last.dead {
            for d in outbox.dead()? {
                if seen.insert(d.id.0) {
                    writeln!(
                        out,
                        "dead {}\t{}\t{}",
                        d.id.0,
                        d.request,
                        one_line(&d.last_error)
                    )
                    .map_err(closed)?;
                }
            }
        }
        out.flush().map_err(closed)?;
        last = s;
    }
}

/// A message on one line (an error may hold newlines), its other control
/// characters escaped (`\u{1b}`): a server's words in a dead job's error
/// must not recolour, retitle or write the clipboard of the terminal.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}
