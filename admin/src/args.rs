//! The command line, parsed with `lexopt`: a store (`--file PATH`, or
//! `--redis URL --stream NAME`), then a command and its options.

use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const USAGE_LINE: &str = "usage: reqpool-outbox (--file PATH | --redis URL --stream NAME) COMMAND [OPTIONS]; --help for more";

pub(crate) const HELP: &str = "\
reqpool-outbox: look at and mend a reqpool outbox, on its SQLite file or
its Redis stream. Prints no secret (a Redis password is never shown; the
outbox stores none).

usage: reqpool-outbox (--file PATH | --redis URL --stream NAME) COMMAND

commands:
  stats                 pending, in flight, delivered and dead jobs
  dead [--limit N]      the dead letters, oldest first: id, attempts,
                        request (redacted), last error
  show ID               one job: a dead letter, or a delivered job's reply
  requeue ID            a dead job back to pending, attempts reset
  requeue --all-dead    every dead job back to pending
  forget ID             removes a delivered or dead job (key, reply, error)
  tail [--every MS]     follows deliveries: a line per change, a line per
                        new dead letter (every 1000 ms by default)
  serve [--listen ADDR] [--deliver [--pause-on-gone]] [--allow-requeue]
                        a status page at http://ADDR/ (127.0.0.1:8080 by
                        default): counts, delivery rate, health, dead
                        letters per host with their last error. Read-only
                        unless --allow-requeue, which needs a token of at
                        least 16 characters in REQPOOL_OUTBOX_TOKEN (typed
                        into the page to requeue). --deliver: this process
                        delivers the jobs (for a file whose program is
                        stopped); with --pause-on-gone a 410 Gone pauses
                        its endpoint (listed, with a resume button when
                        requeue is allowed).

A SQLite file is one process's at a time: while its program runs, these
commands fail with code 3 (on Redis they work at any time).

exit codes: 0 done; 1 the job named is not there (or not dead, for
requeue); 2 a wrong command line; 3 the store cannot be used (no such
file, an empty file, in use, not an outbox, Redis not answering); 4
another failure.
";

/// Where the outbox is.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    File(PathBuf),
    Redis { url: String, stream: String },
}

/// What to do.
#[derive(Debug)]
pub(crate) enum Command {
    Stats {
        store: Store,
    },
    Dead {
        store: Store,
        limit: Option<usize>,
    },
    Show {
        store: Store,
        id: i64,
    },
    /// `id` none: every dead job.
    Requeue {
        store: Store,
        id: Option<i64>,
    },
    Forget {
        store: Store,
        id: i64,
    },
    Tail {
        store: Store,
        every: Duration,
    },
    Serve {
        store: Store,
        options: crate::serve::ServeOptions,
    },
}

impl Command {
    pub(crate) fn store(&self) -> &Store {
        match self {
            Command::Stats { store }
            | Command::Dead { store, .. }
            | Command::Show { store, .. }
            | Command::Requeue { store, .. }
            | Command::Forget { store, .. }
            | Command::Tail { store, .. }
            | Command::Serve { store, .. } => store,
        }
    }

    /// Whether the command delivers jobs (only `serve --deliver`).
    pub(crate) fn delivers(&self) -> bool {
        matches!(self, Command::Serve { options, .. } if options.deliver)
    }

    /// Whether a delivering `serve` pauses an endpoint at a 410.
    pub(crate) fn pauses_on_gone(&self) -> bool {
        matches!(self, Command::Serve { options, .. } if options.pause_on_gone)
    }
}

fn id(v: OsString) -> Result<i64, String> {
    let s = v.string().map_err(|e| e.to_string())?;
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("a job id is a whole number above 0, not {s:?}"))
}

/// The command line, or `None` for `--help`.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Option<Command>, String> {
    let mut p = lexopt::Parser::from_args(args);
    let (mut file, mut redis, mut stream) = (None, None, None);
    let mut command: Option<String> = None;
    let mut id_arg: Option<i64> = None;
    let (mut limit, mut all_dead, mut every) = (None, false, None);
    let (mut listen, mut deliver, mut allow_requeue) = (None, false, false);
    let mut pause_on_gone = false;
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(err)? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("file") => file = Some(PathBuf::from(p.value().map_err(err)?)),
            // The URL may hold a password: never echoed in an error.
            Long("redis") => {
                redis = Some(
                    p.value()
                        .map_err(err)?
                        .string()
                        .map_err(|_| "--redis: not UTF-8".to_string())?,
                )
            }
            Long("stream") => {
                stream = Some(
                    p.value()
                        .map_err(err)?
                        .string()
                        .map_err(|e| e.to_string())?,
                )
            }
            Long("limit") => {
                let v = p
                    .value()
                    .map_err(err)?
                    .string()
                    .map_err(|e| e.to_string())?;
                limit = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("--limit takes a number, not {v:?}"))?,
                );
            }
            Long("every") => {
                let v = p
                    .value()
                    .map_err(err)?
                    .string()
                    .map_err(|e| e.to_string())?;
                let ms = v
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| format!("--every takes milliseconds above 0, not {v:?}"))?;
                every = Some(Duration::from_millis(ms));
            }
            Long("all-dead") => all_dead = true,
            Long("listen") => {
                listen = Some(
                    p.value()
                        .map_err(err)?
                        .string()
                        .map_err(|e| e.to_string())?,
                )
            }
            Long("deliver") => deliver = true,
            Long("allow-requeue") => allow_requeue = true,
            Long("pause-on-gone") => pause_on_gone = true,
            Value(v) if command.is_none() => command = Some(v.string().map_err(|e| e.to_string())?),
            Value(v) if id_arg.is_none() => id_arg = Some(id(v)?),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let store = match (file, redis, stream) {
        (Some(f), None, None) => Store::File(f),
        (None, Some(url), Some(stream)) => Store::Redis { url, stream },
        (None, Some(_), None) => return Err("--redis needs --stream NAME".into()),
        (None, None, _) => {
            return Err("which outbox? --file PATH or --redis URL --stream NAME".into());
        }
        _ => return Err("--file and --redis are two different stores: give one".into()),
    };
    let command =
        command.ok_or("which command? stats, dead, show, requeue, forget, tail or serve")?;
    let need_id = || id_arg.ok_or_else(|| format!("{command} needs a job id"));
    let refuse = |what: &str, given: bool| {
        if given {
            Err(format!("{what} does not go with {command}"))
        } else {
            Ok(())
        }
    };
    refuse("--limit", limit.is_some() && command != "dead")?;
    refuse("--all-dead", all_dead && command != "requeue")?;
    refuse("--every", every.is_some() && command != "tail")?;
    refuse("--listen", listen.is_some() && command != "serve")?;
    refuse("--deliver", deliver && command != "serve")?;
    refuse("--allow-requeue", allow_requeue && command != "serve")?;
    refuse("--pause-on-gone", pause_on_gone && !deliver)?;
    let c = match command.as_str() {
        "stats" => Command::Stats { store },
        "dead" => Command::Dead { store, limit },
        "show" => Command::Show {
            store,
            id: need_id()?,
        },
        "requeue" => match (id_arg, all_dead) {
            (Some(_), true) => return Err("requeue takes an ID or --all-dead, not both".into()),
            (None, false) => return Err("requeue needs an ID or --all-dead".into()),
            (id, _) => Command::Requeue { store, id },
        },
        "forget" => Command::Forget {
            store,
            id: need_id()?,
        },
        "tail" => Command::Tail {
            store,
            every: every.unwrap_or(Duration::from_secs(1)),
        },
        "serve" => {
            let title = match &store {
                Store::File(f) => f.display().to_string(),
                // The stream's name, never the URL (it may hold a password).
                Store::Redis { stream, .. } => format!("redis stream {stream}"),
            };
            Command::Serve {
                store,
                options: crate::serve::ServeOptions {
                    listen: listen.unwrap_or_else(|| "127.0.0.1:8080".into()),
                    deliver,
                    pause_on_gone,
                    allow_requeue,
                    title,
                },
            }
        }
        other => {
            return Err(format!(
                "no command {other:?}: stats, dead, show, requeue, forget, tail or serve"
            ));
        }
    };
    if id_arg.is_some()
        && !matches!(
            c,
            Command::Show { .. } | Command::Requeue { .. } | Command::Forget { .. }
        )
    {
        return Err(format!("{command} takes no job id"));
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Option<Command>, String> {
        parse(line.split_whitespace().map(OsString::from))
    }

    #[test]
    fn good_lines() {
        assert!(matches!(
            p("--file a.db stats"),
            Ok(Some(Command::Stats { .. }))
        ));
        assert!(matches!(
            p("--file a.db dead --limit 3"),
            Ok(Some(Command::Dead { limit: Some(3), .. }))
        ));
        assert!(matches!(
            p("--redis redis://h/ --stream s show 7"),
            Ok(Some(Command::Show { id: 7, .. }))
        ));
        assert!(matches!(
            p("--file a.db requeue --all-dead"),
            Ok(Some(Command::Requeue { id: None, .. }))
        ));
        assert!(matches!(
            p("--file a.db requeue 4"),
            Ok(Some(Command::Requeue { id: Some(4), .. }))
        ));
        assert!(matches!(
            p("--file a.db tail --every 50"),
            Ok(Some(Command::Tail { .. }))
        ));
        assert!(matches!(p("--help"), Ok(None)));
        match p("--redis redis://:pw@h/ --stream s serve --deliver") {
            Ok(Some(Command::Serve { options, .. })) => {
                assert_eq!(options.listen, "127.0.0.1:8080");
                assert!(options.deliver && !options.allow_requeue);
                assert_eq!(options.title, "redis stream s");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_lines_say_why_and_never_echo_a_redis_url() {
        for (line, why) in [
            ("stats", "which outbox"),
            ("--file a.db", "which command"),
            ("--file a.db show", "needs a job id"),
            ("--file a.db show x", "whole number"),
            ("--file a.db show 0", "whole number"),
            ("--file a.db requeue", "needs an ID or --all-dead"),
            ("--file a.db requeue 3 --all-dead", "not both"),
            ("--file a.db stats 3", "takes no job id"),
            ("--file a.db dead --limit x", "--limit takes a number"),
            ("--file a.db stats --limit 3", "does not go with"),
            ("--file a.db frob", "no command"),
            ("--file a.db tail --every 0", "above 0"),
            ("--redis redis://:hunter2@h/ stats", "needs --stream"),
            (
                "--file a.db --redis redis://:hunter2@h/ --stream s stats",
                "two different stores",
            ),
            ("--file a.db stats --bogus", "bogus"),
            ("--file a.db stats --deliver", "does not go with"),
            ("--file a.db serve --pause-on-gone", "does not go with"),
        ] {
            let e = p(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
            assert!(!e.contains("hunter2"), "{line}: {e}");
        }
    }
}
