//! Bulk loading: rows a rebuild folded in memory ([`crate::memory`]) written into fresh
//! tables, by `COPY` on PostgreSQL and prepared inserts on SQLite.

use crate::change::Value;
use crate::memory::Row;
use crate::schema::Table;
use crate::store::{ReadError, ReadStore};

/// Append `s` to a `COPY … FROM STDIN` text-format buffer: backslash, tab, newline and
/// carriage return escaped, every other byte as is (the runs between them found with
/// `memchr` and copied at once: most texts, JSON payloads included, have none).
fn push_copy_text(buf: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    // Carriage returns are searched for apart (memchr3 takes three bytes), once per hit.
    let mut next_cr = memchr::memchr(b'\r', bytes);
    loop {
        let other = memchr::memchr3(b'\\', b'\t', b'\n', &bytes[start..]).map(|i| start + i);
        let Some(i) = (match (other, next_cr) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }) else {
            break;
        };
        let escaped = match bytes[i] {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            _ => "\\r",
        };
        // The escaped bytes are ASCII, so `i` is a character boundary.
        buf.push_str(&s[start..i]);
        buf.push_str(escaped);
        start = i + 1;
        if next_cr == Some(i) {
            next_cr = memchr::memchr(b'\r', &bytes[start..]).map(|j| start + j);
        }
    }
    buf.push_str(&s[start..]);
}

/// Bulk-load `rows` (in `t`'s column order) into table `name`.
pub(crate) async fn write_rows(
    read: &ReadStore,
    name: &str,
    t: &Table,
    rows: Vec<Row>,
) -> Result<(), ReadError> {
    if rows.is_empty() {
        return Ok(());
    }
    match read {
        ReadStore::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            let mut copy = conn
                .copy_in_raw(&crate::sql::copy_in(name, t.columns))
                .await?;
            let mut buf = String::with_capacity(1 << 20);
            for row in rows {
                for (i, cell) in row.iter().enumerate() {
                    if i > 0 {
                        buf.push('\t');
                    }
                    match cell {
                        Value::Null => buf.push_str("\\N"),
                        Value::Int(v) => {
                            use std::fmt::Write as _;
                            let _ = write!(buf, "{v}");
                        }
                        Value::Text(s) => push_copy_text(&mut buf, s),
                        Value::Doc(d) => push_copy_text(&mut buf, &d.json()),
                    }
                }
                buf.push('\n');
                if buf.len() > (1 << 20) {
                    // One buffer for the whole table: no fresh megabyte per chunk.
                    copy.send(buf.as_bytes()).await?;
                    buf.clear();
                }
            }
            if !buf.is_empty() {
                copy.send(buf.into_bytes()).await?;
            }
            copy.finish().await?;
        }
        ReadStore::Sqlite(pool) => {
            let sql = crate::sql::insert_row(name, t.columns);
            let mut tx = pool.begin().await?;
            for row in rows {
                let mut q = sqlx::query(&sql);
                for cell in row {
                    q = match cell {
                        Value::Null => q.bind(None::<String>),
                        Value::Int(v) => q.bind(v),
                        Value::Text(s) => q.bind(s),
                        Value::Doc(d) => q.bind(d.json()),
                    };
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::push_copy_text;

    #[test]
    fn copy_text_escapes_only_what_copy_reads_specially() {
        let mut buf = String::from("x\t");
        push_copy_text(&mut buf, "a\\b\tc\nd\re \"名字\" \\\\n");
        assert_eq!(buf, "x\ta\\\\b\\tc\\nd\\re \"名字\" \\\\\\\\n");
        let mut plain = String::new();
        push_copy_text(&mut plain, "{\"name\":\"王\"}");
        assert_eq!(plain, "{\"name\":\"王\"}");
    }

    /// Every string of up to five characters over the special bytes, a plain one and a
    /// multi-byte one, against a character-by-character escape.
    #[test]
    fn copy_text_matches_a_char_by_char_escape() {
        let alphabet = ['a', '\\', '\t', '\n', '\r', '名'];
        let reference = |s: &str| {
            s.chars()
                .map(|c| match c {
                    '\\' => "\\\\".to_string(),
                    '\t' => "\\t".to_string(),
                    '\n' => "\\n".to_string(),
                    '\r' => "\\r".to_string(),
                    c => c.to_string(),
                })
                .collect::<String>()
        };
        let mut strings = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = strings
                .iter()
                .filter(|s| s.chars().count() == strings.last().unwrap().chars().count())
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(longer);
        }
        assert_eq!(strings.len(), 1 + 6 + 36 + 216 + 1296 + 7776);
        for s in &strings {
            let mut buf = String::new();
            push_copy_text(&mut buf, s);
            assert_eq!(buf, reference(s), "{s:?}");
        }
    }
}
