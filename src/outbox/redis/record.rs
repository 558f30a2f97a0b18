//! A job as a stream entry holds it: its fields written by `enqueue` (and
//! again for a later try or a dead letter), read back, and a clear reason
//! for an entry that reqpool did not write.

use crate::prepare::Stored;
use redis::Value;

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

impl Record {
    /// Its fields, with `attempts` and `due` as given. The job's id comes
    /// first unless `with_id` is false (the enqueue script adds it).
    pub(super) fn fields(&self, with_id: bool) -> Fields {
        let s = &self.stored;
        let mut out: Fields = Vec::with_capacity(8);
        if with_id {
            out.push(("job".into(), self.id.to_string().into_bytes()));
        }
        let headers = serde_json::to_string(&s.headers).unwrap_or_else(|_| "[]".into());
        out.push(("key".into(), s.key.clone().unwrap_or_default().into_bytes()));
        out.push(("method".into(), s.method.clone().into_bytes()));
        out.push(("url".into(), s.url.clone().into_bytes()));
        out.push(("headers".into(), headers.into_bytes()));
        out.push(("attempts".into(), self.attempts.to_string().into_bytes()));
        out.push(("due".into(), self.due.to_string().into_bytes()));
        out.push(("tries".into(), self.tries.to_string().into_bytes()));
        out.push(("stops".into(), self.stops.to_string().into_bytes()));
        out.push(("created".into(), self.created.to_string().into_bytes()));
        if let Some(o) = &self.order {
            out.push(("order".into(), o.clone().into_bytes()));
        }
        if let Some(b) = &s.body {
            out.push(("body".into(), b.clone()));
        }
        out
    }

    /// The job an entry holds, or why it is not one of reqpool's.
    pub(super) fn parse(fields: &Fields) -> Result<Record, String> {
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let text = |name: &str| -> Result<String, String> {
            let v = get(name).ok_or_else(|| format!("not a reqpool job: no `{name}` field"))?;
            String::from_utf8(v.clone())
                .map_err(|_| format!("not a reqpool job: `{name}` is not UTF-8"))
        };
        let number = |name: &str| -> Result<i64, String> {
            text(name)?
                .parse()
                .map_err(|_| format!("not a reqpool job: `{name}` is not a number"))
        };
        let id = number("job")?;
        // Counts written by hand are clamped rather than refused; fields
        // older versions did not write are 0.
        let count = |name: &str| -> Result<u32, String> {
            match get(name) {
                None => Ok(0),
                Some(_) => Ok(u32::try_from(number(name)?.max(0)).unwrap_or(u32::MAX)),
            }
        };
        let headers: Vec<(String, String)> = serde_json::from_str(&text("headers")?)
            .map_err(|e| format!("not a reqpool job: `headers` is not a list of pairs: {e}"))?;
        let key = text("key")?;
        Ok(Record {
            id,
            attempts: count("attempts")?,
            tries: count("tries")?,
            stops: count("stops")?,
            created: if get("created").is_some() {
                number("created")?
            } else {
                0
            },
            due: number("due")?,
            stored: Stored {
                method: text("method")?,
                url: text("url")?,
                headers,
                body: get("body").cloned(),
                key: (!key.is_empty()).then_some(key),
            },
            order: get("order").map(|o| String::from_utf8_lossy(o).into_owned()),
        })
    }
}

/// The entries of a stream reply (`XRANGE`, one stream of `XREADGROUP`,
/// `XAUTOCLAIM`'s second element): id and fields each. Entries deleted
/// meanwhile (no fields) come with none.
pub(super) fn entries(v: &Value) -> Vec<(String, Fields)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = string(pair.first()?)?;
            let fields = match pair.get(1) {
                Some(Value::Array(kv)) => kv
                    .chunks(2)
                    .filter_map(|c| Some((string(c.first()?)?, bytes(c.get(1)?)?)))
                    .collect(),
                _ => Vec::new(),
            };
            Some((id, fields))
        })
        .collect()
}

/// The entries of an `XREADGROUP` reply on one stream.
pub(super) fn read_reply(v: &Value) -> Vec<(String, Fields)> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(pair) => pair.get(1).map(entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub(super) fn string(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// A field's value as text, if the entry has it.
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
