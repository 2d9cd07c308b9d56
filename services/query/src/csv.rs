//! Rows as CSV (RFC 4180): one column per field, in the order of the JSON form.
//!
//! Text that a spreadsheet would read as a formula (a cell starting with `=`, `+`, `-`,
//! `@`, a tab or a carriage return: a customer named `=HYPERLINK(…)`) is written with a
//! leading `'`, as OWASP recommends against CSV injection; numbers are left as numbers.

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde::Serialize;
use serde_json::Value;

/// Render `rows` as CSV. Nested values are written as JSON text; nulls as empty cells.
pub fn render<T: Serialize>(rows: &[T]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    let Some(first) = rows.first() else {
        return Ok(out);
    };
    let columns = field_order(&serde_json::to_string(first)?)?;
    out.push_str(
        &columns
            .iter()
            .map(|c| cell(c))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str("\r\n");
    for row in rows {
        let v = serde_json::to_value(row)?;
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match v.get(c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => cell(&neutralised(s)),
                Some(other) => cell(&other.to_string()),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    Ok(out)
}

/// The keys of a JSON object in the order they are written.
fn field_order(json: &str) -> Result<Vec<String>, serde_json::Error> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                keys.push(k);
            }
            Ok(keys)
        }
    }
    serde_json::Deserializer::from_str(json).deserialize_map(Keys)
}

/// Text a spreadsheet would evaluate, made inert.
fn neutralised(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

fn cell(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    struct Row {
        name: &'static str,
        n: i64,
        rate: Option<f64>,
    }

    #[test]
    fn keeps_field_order_quotes_what_needs_it_and_leaves_nulls_empty() {
        let csv = super::render(&[
            Row {
                name: "a,b",
                n: 1,
                rate: Some(0.5),
            },
            Row {
                name: "say \"hi\"",
                n: 2,
                rate: None,
            },
        ])
        .unwrap();
        assert_eq!(
            csv,
            "name,n,rate\r\n\"a,b\",1,0.5\r\n\"say \"\"hi\"\"\",2,\r\n"
        );
        assert_eq!(super::render::<Row>(&[]).unwrap(), "");
    }

    #[test]
    fn formulas_are_made_inert_and_numbers_stay_numbers() {
        let rows: Vec<Row> = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "a=b",
        ]
        .iter()
        .map(|name| Row {
            name,
            n: -3,
            rate: Some(-0.5),
        })
        .collect();
        let csv = super::render(&rows).unwrap();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[1],
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-3,-0.5"
        );
        assert_eq!(lines[2], "'+1,-3,-0.5");
        assert_eq!(lines[3], "'-2,-3,-0.5");
        assert_eq!(lines[4], "'@SUM(A1),-3,-0.5");
        assert_eq!(lines[5], "'\tx,-3,-0.5");
        assert_eq!(lines[6], "\"'\rx\",-3,-0.5");
        assert_eq!(lines[7], "a=b,-3,-0.5");
    }
}
