//! A job as a stream entry holds it, written by `enqueue` (and again for
//! a dead letter, or a job handed back) and read back, and a clear
//! reason for an entry that reqpool did not write.
//!
//! The layout since 0.1's lighter record: three fields, `job` (its id,
//! which the enqueue script adds), `m` (everything else but the body, one
//! JSON array: see [`Record::meta`]) and `body` (if it has one). Before
//! it, every part was a field of its own (`job`, `key`, `method`, `url`,
//! `headers`, `attempts`, `due`, `tries`, `stops`, `created`, `order`,
//! `body`): such entries are still read, and written again in the new
//! layout when they move (a dead letter, a job handed back). A dead
//! letter adds `error` (and `entry`, for an entry that was not a job).
//!
//! A read entry's values are moved out of the reply, not copied: the
//! body goes to the pool as Redis sent it.

use crate::outbox::store::Row;
use crate::prepare::Stored;
use redis::Value;

/// The field of the metadata, in the current layout.
pub(super) const META: &str = "m";

/// The version the metadata's array begins with.
const VERSION: u8 = 2;

/// The metadata as read: version, key, method, URL, headers, attempts,
/// due, tries, stops, created, order key. (A tuple: serde reads it
/// without a derive.)
type Meta = (
    u8,
    String,
    String,
    String,
    Vec<(String, String)>,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

/// A job read from the stream.
#[derive(Clone)]
pub(super) struct Record {
    pub(super) id: i64,
    /// What `max_attempts` counts, before this delivery (see
    /// `Claimed`).
    pub(super) attempts: u32,
    /// Deliveries tried before this one, sent or not.
    pub(super) tries: u32,
    /// Deliveries whose consumer stopped.
    pub(super) stops: u32,
    /// When it was enqueued (ms since the epoch; 0 if not known).
    pub(super) created: i64,
    /// Not before (ms since the epoch).
    pub(super) due: i64,
    pub(super) stored: Stored,
    /// Its order key, if it was enqueued in one's order.
    pub(super) order: Option<String>,
}

/// Fields and values, as a stream entry holds them.
pub(super) type Fields = Vec<(String, Vec<u8>)>;

/// A count written by hand is clamped rather than refused.
fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// `s` as a JSON string.
fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The metadata of a row being enqueued: no attempt yet, due now. (Its
/// headers are JSON already.)
pub(super) fn row_meta(r: &Row) -> String {
    format!(
        "[{VERSION},{},{},{},{},0,0,0,0,{},{}]",
        json(&r.key),
        json(&r.method),
        json(&r.url),
        r.headers,
        r.created,
        r.order.as_deref().map_or_else(|| "null".into(), json)
    )
}

impl Record {
    /// Everything but the id and the body, as the `m` field holds it: a
    /// JSON array `[2, key, method, url, headers, attempts, due, tries,
    /// stops, created, order]` (headers as `[[name, value], …]`, an empty
    /// key for none, `null` for no order key).
    pub(super) fn meta(&self) -> String {
        let s = &self.stored;
        serde_json::to_string(&(
            VERSION,
            s.key.as_deref().unwrap_or_default(),
            &s.method,
            &s.url,
            &s.headers,
            self.attempts,
            self.due,
            self.tries,
            self.stops,
            self.created,
            self.order.as_deref(),
        ))
        .unwrap_or_default()
    }

    /// Its fields, with `attempts` and `due` as they are now. The job's
    /// id comes first unless `with_id` is false (the enqueue script adds
    /// it).
    pub(super) fn fields(&self, with_id: bool) -> Fields {
        let mut out: Fields = Vec::with_capacity(3);
        if with_id {
            out.push(("job".into(), self.id.to_string().into_bytes()));
        }
        out.push((META.into(), self.meta().into_bytes()));
        if let Some(b) = &self.stored.body {
            out.push(("body".into(), b.clone()));
        }
        out
    }

    /// The job an entry holds, in either layout, or why it is not one of
    /// reqpool's. Its body is moved out of `fields`.
    pub(super) fn parse(fields: &mut Fields) -> Result<Record, String> {
        let id = {
            let v = field(fields, "job").ok_or("not a reqpool job: no `job` field")?;
            std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or("not a reqpool job: `job` is not a number")?
        };
        let mut record = match field(fields, META) {
            Some(m) => Record::from_meta(id, m)?,
            None => Record::from_old(id, fields)?,
        };
        record.stored.body = fields
            .iter_mut()
            .find(|(k, _)| k == "body")
            .map(|(_, v)| std::mem::take(v));
        Ok(record)
    }

    /// The current layout: the metadata's array.
    fn from_meta(id: i64, m: &[u8]) -> Result<Record, String> {
        let (version, key, method, url, headers, attempts, due, tries, stops, created, order): Meta =
            serde_json::from_slice(m)
                .map_err(|e| format!("not a reqpool job: `{META}` is not its metadata: {e}"))?;
        if version != VERSION {
            return Err(format!(
                "not a reqpool job: `{META}` is of layout {version}, this version reads {VERSION}"
            ));
        }
        Ok(Record {
            id,
            attempts: count(attempts),
            tries: count(tries),
            stops: count(stops),
            created,
            due,
            stored: Stored {
                method,
                url,
                headers,
                body: None,
                key: (!key.is_empty()).then_some(key),
            },
            order,
        })
    }

    /// The layout before the metadata field: a field for each part.
    fn from_old(id: i64, fields: &Fields) -> Result<Record, String> {
        let text = |name: &str| -> Result<String, String> {
            let v = field(fields, name)
                .ok_or_else(|| format!("not a reqpool job: no `{name}` field"))?;
            String::from_utf8(v.to_vec())
                .map_err(|_| format!("not a reqpool job: `{name}` is not UTF-8"))
        };
        let number = |name: &str| -> Result<i64, String> {
            text(name)?
                .parse()
                .map_err(|_| format!("not a reqpool job: `{name}` is not a number"))
        };
        // Fields older versions did not write are 0.
        let or_zero = |name: &str| -> Result<i64, String> {
            match field(fields, name) {
                None => Ok(0),
                Some(_) => number(name),
            }
        };
        let headers: Vec<(String, String)> = serde_json::from_str(&text("headers")?)
            .map_err(|e| format!("not a reqpool job: `headers` is not a list of pairs: {e}"))?;
        let key = text("key")?;
        Ok(Record {
            id,
            attempts: count(or_zero("attempts")?),
            tries: count(or_zero("tries")?),
            stops: count(or_zero("stops")?),
            created: or_zero("created")?,
            due: number("due")?,
            stored: Stored {
                method: text("method")?,
                url: text("url")?,
                headers,
                body: None,
                key: (!key.is_empty()).then_some(key),
            },
            order: field(fields, "order").map(|o| String::from_utf8_lossy(o).into_owned()),
        })
    }
}

/// The entries of a stream reply (`XRANGE`, one stream of `XREADGROUP`,
/// `XAUTOCLAIM`'s second element): id and fields each, moved out of the
/// reply. Entries deleted meanwhile (no fields) come with none.
pub(super) fn entries(v: Value) -> Vec<(String, Fields)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let mut pair = pair.into_iter();
            let id = into_string(pair.next()?)?;
            let fields = match pair.next() {
                Some(Value::Array(kv)) => {
                    let mut out = Vec::with_capacity(kv.len() / 2);
                    let mut kv = kv.into_iter();
                    while let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                        if let (Some(k), Some(v)) = (into_string(k), into_bytes(v)) {
                            out.push((k, v));
                        }
                    }
                    out
                }
                _ => Vec::new(),
            };
            Some((id, fields))
        })
        .collect()
}

/// The entries of an `XREADGROUP` reply.
pub(super) fn read_reply(v: Value) -> Vec<(String, Fields)> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(pair) => pair.into_iter().nth(1).map(entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// A value's bytes, moved out of it.
fn into_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn into_string(v: Value) -> Option<String> {
    into_bytes(v).and_then(|b| String::from_utf8(b).ok())
}

pub(super) fn string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A field's value, if the entry has it.
pub(super) fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// A field of one group in an `XINFO GROUPS` reply (a list of maps, or
/// of flat name/value lists under RESP2).
pub(super) fn group_field(v: &Value, group: &str, name: &str) -> Option<String> {
    let Value::Array(groups) = v else {
        return None;
    };
    groups.iter().find_map(|g| {
        let pairs: Vec<(String, &Value)> = match g {
            Value::Array(flat) => flat
                .chunks(2)
                .filter_map(|c| Some((string(c.first()?)?, c.get(1)?)))
                .collect(),
            Value::Map(m) => m
                .iter()
                .filter_map(|(k, v)| Some((string(k)?, v)))
                .collect(),
            _ => return None,
        };
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        (get("name").and_then(string).as_deref() == Some(group))
            .then(|| get(name).and_then(string))
            .flatten()
    })
}
