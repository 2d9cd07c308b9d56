//! The one place SQL text is made in the read side's write path: the tables' DDL from
//! their declarations ([`crate::schema`]), and each typed change ([`crate::change`]),
//! position move, dead letter and checkpoint of a batch, for PostgreSQL or SQLite.
//!
//! PostgreSQL takes a batch as one script in one round trip (simple query protocol),
//! values written as typed literals (`(E'…'::text)`, `(7::int8)`, `(NULL::int8)`), each
//! meaning exactly what the bound parameter would. SQLite runs in-process and takes the
//! statements one by one with bound parameters. Table names are the declared ones
//! followed by a suffix (a rebuild's fresh tables); no value ever becomes SQL text
//! other than as a literal rendered here.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::change::{Change, Cond, Insert, Set, Update, Value};
use crate::plan::{Move, Plan, Progress};
use crate::schema::{
    AddedColumn, DroppedColumn, Kind, Projection, Table, ADDED_COLUMNS, ADDED_INDEXES,
    DROPPED_COLUMNS, STRIPE, STRIPES_SINCE,
};
use crate::store::{Prepared, ReadError};

/// Which database a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// One statement with its bound values (each with whether it is an integer, for the
/// type of a NULL); none on PostgreSQL's scripts.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<(Value, bool)>,
    /// It must change exactly one row, else the batch raced another transaction on this
    /// stream's position (SQLite; PostgreSQL checks in the script).
    pub one_row: Option<String>,
}

/// A statement being written: values go in as literals (PostgreSQL) or as `$n`
/// parameters (SQLite).
struct Sql {
    backend: Backend,
    text: String,
    args: Vec<(Value, bool)>,
}

impl Sql {
    fn value(&mut self, v: &Value, int: bool) -> Result<(), ReadError> {
        match self.backend {
            Backend::Postgres => push_literal(&mut self.text, v, int),
            Backend::Sqlite => {
                let v = match v {
                    Value::Doc(d) => Value::Text(d.json()),
                    v => v.clone(),
                };
                self.args.push((v, int));
                let _ = write!(self.text, "${}", self.args.len());
                Ok(())
            }
        }
    }
}

/// `v` as a PostgreSQL literal of the type sqlx would bind it as (`int8`, `text`). Text
/// goes in an escape string (`E'…'`, backslashes and quotes doubled), whatever
/// `standard_conforming_strings` says.
pub(crate) fn push_literal(script: &mut String, v: &Value, int: bool) -> Result<(), ReadError> {
    match v {
        Value::Int(v) => {
            let _ = write!(script, "({v}::int8)");
        }
        Value::Text(v) => push_escaped(script, v, "text")?,
        Value::Doc(d) => push_escaped(script, &d.json(), "text")?,
        Value::Null if int => script.push_str("(NULL::int8)"),
        Value::Null => script.push_str("(NULL::text)"),
    }
    Ok(())
}

/// `(E'v'::ty)`.
fn push_escaped(script: &mut String, v: &str, ty: &str) -> Result<(), ReadError> {
    if v.contains('\0') {
        return Err(ReadError::Config(
            "a text value with a NUL character cannot be stored".into(),
        ));
    }
    script.push_str("(E'");
    for c in v.chars() {
        match c {
            '\'' => script.push_str("''"),
            '\\' => script.push_str("\\\\"),
            c => script.push(c),
        }
    }
    let _ = write!(script, "'::{ty})");
    Ok(())
}

/// A batch to write: its events, its plan, the changes of the plan's steps, and where
/// they go.
pub(crate) struct Batch<'a> {
    pub events: &'a [Prepared],
    pub plan: &'a Plan<'a>,
    /// (index in `PROJECTIONS`, projection, table suffix) per target.
    pub targets: &'a [(usize, Projection, &'a str)],
    /// The changes of each step of the plan, with its target, in order.
    pub changes: &'a [(usize, Vec<Change>)],
    /// Whether poison is recorded in `rm_dead_letters` (the live tables only).
    pub dead_letters: bool,
    /// The checkpoints that move: each consumer's, with its share of the batch.
    pub consumers: &'a [(&'a str, Progress)],
    /// The stripe its counter amounts are added to ([`Table::striped`]).
    pub stripe: i64,
    pub now_us: i64,
}

/// The statements of a batch: its changes, each into its target's tables (rows of tables
/// that only grow written together; a memo row once, as the batch left it), the dead
/// letters, the position moves, the consumers' checkpoints, and last the amounts added to
/// counter rows, summed over the batch (so the counters, the rows concurrent batches
/// share, are locked only for the commit).
pub(crate) fn batch(backend: Backend, b: &Batch) -> Result<Vec<Statement>, ReadError> {
    let mut out = Script::new(backend);
    let counters = changes(&mut out, b)?;
    if b.dead_letters {
        for &i in &b.plan.dead {
            dead_letter(&mut out, &b.events[i], b.now_us)?;
        }
    }
    for (t, (_, projection, suffix)) in b.targets.iter().enumerate() {
        let table = format!("{}{suffix}", projection.positions_table());
        out.moves(&table, &b.plan.moves[t])?;
    }
    for (consumer, progress) in b.consumers {
        checkpoint(&mut out, consumer, progress, b.now_us)?;
    }
    counters.render(&mut out, b.targets, b.stripe)?;
    Ok(out.finish())
}

/// The batch's changes but the counters' (returned, summed), table by table (no change
/// reads another table than its own, so only the order within a table matters):
/// - rows of tables that only grow: one `INSERT` per 500 rows;
/// - a table whose every change in the batch replaces or removes a whole row (memos; the
///   KPI ledger's spans, wins and complaints): only each key's last change counts, so
///   one upsert per 500 rows and one delete per 500 keys, in key order;
/// - any other table: its changes as runs of one statement each, a group's changes in
///   order ([`crate::change::runs`]).
fn changes(out: &mut Script, b: &Batch) -> Result<Counters, ReadError> {
    use std::collections::BTreeMap;
    let mut counters = Counters::default();
    let mut tables: BTreeMap<(usize, &str), Vec<&Change>> = BTreeMap::new();
    for (t, changes) in b.changes {
        for c in changes {
            match c {
                Change::Add(a) => counters.add(*t, a),
                c => tables.entry((*t, c.table().name)).or_default().push(c),
            }
        }
    }
    for ((t, _), changes) in tables {
        let suffix = b.targets[t].2;
        let table = changes[0].table();
        let keys = table.key_columns();
        let replaced: Option<Vec<Replaced>> = changes.iter().map(|c| replaced(c, &keys)).collect();
        match (table.kind, replaced) {
            (Kind::Log, _) => {
                let rows: Vec<&Insert> = changes
                    .iter()
                    .filter_map(|c| match c {
                        Change::Insert(i) => Some(i),
                        _ => None,
                    })
                    .collect();
                for chunk in rows.chunks(500) {
                    out.add(|s| insert_rows(s, chunk, suffix))?;
                }
            }
            (_, Some(replaced)) => last_of_each_key(out, table, replaced, suffix)?,
            (_, None) => {
                for run in crate::change::runs(&changes) {
                    for chunk in run.chunks(500) {
                        out.add(|s| statement(s, chunk, suffix))?;
                    }
                }
            }
        }
    }
    Ok(counters)
}

/// A change that replaces a whole row (`Some`) or removes it (`None`), by key.
type Replaced<'c> = (Vec<&'c Value>, Option<&'c Insert>);

/// (`keys`: the positions of the table's key columns.)
fn replaced<'c>(c: &'c Change, keys: &[usize]) -> Option<Replaced<'c>> {
    match c {
        Change::Upsert(i) => {
            let key = keys.iter().map(|k| &i.values[*k]).collect();
            Some((key, Some(i)))
        }
        Change::Delete(d) => Some((d.key.iter().collect(), None)),
        _ => None,
    }
}

/// The last of `changes` (in order) to each key of `table`: the rows upserted, the keys
/// deleted.
fn last_of_each_key(
    out: &mut Script,
    table: &Table,
    changes: Vec<Replaced>,
    suffix: &str,
) -> Result<(), ReadError> {
    let last: std::collections::HashMap<Vec<&Value>, Option<&Insert>> =
        changes.into_iter().collect();
    let mut last: Vec<Replaced> = last.into_iter().collect();
    last.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let (rows, gone): (Vec<Replaced>, Vec<Replaced>) =
        last.into_iter().partition(|r| r.1.is_some());
    let rows: Vec<&Insert> = rows.into_iter().filter_map(|r| r.1).collect();
    for chunk in rows.chunks(500) {
        out.add(|s| {
            insert_rows(s, chunk, suffix)?;
            replace_on_conflict(s, table);
            Ok(())
        })?;
    }
    let gone: Vec<Vec<&Value>> = gone.into_iter().map(|r| r.0).collect();
    for chunk in gone.chunks(500) {
        out.add(|s| delete_rows(s, table, chunk, suffix))?;
    }
    Ok(())
}

/// `DELETE FROM t WHERE (key columns) IN (VALUES (key), …)`.
fn delete_rows(
    s: &mut Sql,
    t: &Table,
    keys: &[Vec<&Value>],
    suffix: &str,
) -> Result<(), ReadError> {
    let columns = t.key_columns();
    let names: Vec<&str> = columns.iter().map(|i| t.columns[*i].0).collect();
    let _ = write!(
        s.text,
        "DELETE FROM {}{suffix} WHERE ({}) IN (VALUES ",
        t.name,
        names.join(", ")
    );
    for (r, key) in keys.iter().enumerate() {
        s.text.push_str(if r == 0 { "(" } else { ", (" });
        for (k, (i, v)) in columns.iter().zip(key).enumerate() {
            if k > 0 {
                s.text.push_str(", ");
            }
            s.value(v, t.columns[*i].1.starts_with("BIGINT"))?;
        }
        s.text.push(')');
    }
    s.text.push(')');
    Ok(())
}

fn dead_letter(out: &mut Script, p: &Prepared, now_us: i64) -> Result<(), ReadError> {
    let reason = p.poison().map(ToString::to_string).unwrap_or_default();
    let values = [
        Value::from(p.event.event_id.to_string()),
        Value::from(p.event.stream_id.as_str()),
        Value::Int(p.event.stream_version as i64),
        Value::from(p.event.event_type.as_str()),
        Value::from(reason),
        Value::Int(now_us),
    ];
    out.add(|s| {
        s.text.push_str(
            "INSERT INTO rm_dead_letters (event_id, stream_id, version, event_type, \
             reason, recorded_us) VALUES (",
        );
        values_list(s, &values, &[false, false, true, false, false, true])?;
        s.text.push_str(") ON CONFLICT (event_id) DO NOTHING");
        Ok(())
    })
}

fn checkpoint(
    out: &mut Script,
    consumer: &str,
    progress: &Progress,
    now_us: i64,
) -> Result<(), ReadError> {
    let values = [
        Value::from(consumer),
        Value::Int(progress.last_sequence),
        Value::Int(progress.applied),
        Value::Int(progress.last_event_us),
        Value::Int(now_us),
    ];
    out.add(|s| {
        s.text.push_str(
            "INSERT INTO rm_checkpoints (consumer, stream_sequence, events_applied, \
             last_event_us, updated_at_us) VALUES (",
        );
        values_list(s, &values, &[false, true, true, true, true])?;
        s.text.push_str(CHECKPOINT_MERGE);
        Ok(())
    })
}

/// The amounts a batch adds to counter rows, summed per (target, table, key).
#[derive(Default)]
struct Counters {
    rows: std::collections::BTreeMap<(usize, &'static str), CounterRows>,
}

struct CounterRows {
    table: &'static Table,
    /// Key → amount per column (0 for the key columns).
    sums: std::collections::HashMap<Vec<Value>, Vec<i64>>,
}

impl Counters {
    fn add(&mut self, target: usize, a: &crate::change::Add) {
        let rows = self
            .rows
            .entry((target, a.table.name))
            .or_insert_with(|| CounterRows {
                table: a.table,
                sums: std::collections::HashMap::new(),
            });
        let sums = rows
            .sums
            .entry(a.key.clone())
            .or_insert_with(|| vec![0; a.table.columns.len()]);
        for (c, n) in &a.amounts {
            sums[c.index] += n;
        }
    }

    /// One upsert per table and chunk of rows, the rows in key order (so concurrent
    /// batches take the rows' locks in one order), into `stripe`'s rows.
    fn render(
        self,
        out: &mut Script,
        targets: &[(usize, Projection, &str)],
        stripe: i64,
    ) -> Result<(), ReadError> {
        for ((t, _), rows) in self.rows {
            let suffix = targets[t].2;
            let t = rows.table;
            let mut sums: Vec<(Vec<Value>, Vec<i64>)> = rows.sums.into_iter().collect();
            sums.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for chunk in sums.chunks(500) {
                out.add(|s| counter_upsert(s, t, suffix, stripe, chunk))?;
            }
        }
        Ok(())
    }
}

/// `INSERT … (key, amounts, stripe) … ON CONFLICT (key, stripe) DO UPDATE SET c = c +
/// excluded.c`.
fn counter_upsert(
    s: &mut Sql,
    t: &Table,
    suffix: &str,
    stripe: i64,
    rows: &[(Vec<Value>, Vec<i64>)],
) -> Result<(), ReadError> {
    let keys = t.key_columns();
    let width = t.columns.len();
    let _ = write!(
        s.text,
        "INSERT INTO {}{suffix} ({}, {STRIPE}) ",
        t.name,
        column_names(t).join(", ")
    );
    let stripe = Value::Int(stripe);
    let cell = |r: usize, i: usize| match keys.iter().position(|k| *k == i) {
        Some(k) => Cow::Borrowed(&rows[r].0[k]),
        None if i == width => Cow::Borrowed(&stripe),
        None => Cow::Owned(Value::Int(rows[r].1[i])),
    };
    let mut ints = column_ints(t);
    ints.push(true);
    row_source(s, &ints, rows.len(), cell)?;
    let _ = write!(
        s.text,
        " ON CONFLICT ({}, {STRIPE}) DO UPDATE SET {}",
        t.primary_key.join(", "),
        sum_into(t, suffix)
    );
    Ok(())
}

/// `c = t.c + excluded.c, …` for each amount of counter `t`.
fn sum_into(t: &Table, suffix: &str) -> String {
    let amounts: Vec<String> = amount_names(t)
        .map(|c| format!("{c} = {}{suffix}.{c} + excluded.{c}", t.name))
        .collect();
    amounts.join(", ")
}

/// The names of `t`'s columns, in order.
fn column_names(t: &Table) -> Vec<&'static str> {
    t.columns.iter().map(|(c, _)| *c).collect()
}

/// Whether each of `t`'s columns holds integers, in order.
fn column_ints(t: &Table) -> Vec<bool> {
    t.columns
        .iter()
        .map(|(_, ty)| ty.starts_with("BIGINT"))
        .collect()
}

/// The columns of counter `t` that hold amounts (not its key).
fn amount_names(t: &Table) -> impl Iterator<Item = &'static str> + '_ {
    let keys = t.key_columns();
    t.columns
        .iter()
        .enumerate()
        .filter(move |(i, _)| !keys.contains(i))
        .map(|(_, (c, _))| *c)
}

/// The statements moving every striped row of counter `t` into stripe 0 (its amounts
/// added to the key's stripe-0 row), leaving every key's sum as it was.
///
/// On PostgreSQL one statement, so atomic on its own: the rows it deletes are exactly
/// those it adds, and rows a projector's open transaction holds are skipped (folded next
/// time), so a fold never waits on a projector. A projector that next adds to a row the
/// fold deleted waits for the fold's commit and inserts the row again. On SQLite, whose
/// writers take turns, an upsert of the sums and a delete, in the caller's transaction.
pub(crate) fn fold(backend: Backend, t: &Table) -> Vec<String> {
    let keys: Vec<&str> = t.primary_key.to_vec();
    let names = column_names(t);
    let sums: Vec<String> = t
        .columns
        .iter()
        .map(|(c, _)| match keys.contains(c) {
            true => c.to_string(),
            false => format!("CAST(sum({c}) AS BIGINT)"),
        })
        .collect();
    let (name, keys, names, sums) = (t.name, keys.join(", "), names.join(", "), sums.join(", "));
    let upsert = |from: &str| {
        format!(
            "INSERT INTO {name} ({names}, {STRIPE}) SELECT {sums}, 0 FROM {from} \
             GROUP BY {keys} ORDER BY {keys} ON CONFLICT ({keys}, {STRIPE}) DO UPDATE SET {}",
            sum_into(t, "")
        )
    };
    match backend {
        Backend::Postgres => vec![format!(
            "WITH gone AS (DELETE FROM {name} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {name} \
             WHERE {STRIPE} <> 0 FOR UPDATE SKIP LOCKED)) RETURNING {names}) {}",
            upsert("gone")
        )],
        Backend::Sqlite => vec![
            upsert(&format!("{name} WHERE {STRIPE} <> 0")),
            format!("DELETE FROM {name} WHERE {STRIPE} <> 0"),
        ],
    }
}

/// The rows an `INSERT` takes, `cell(row, column)` each of `n` rows of `t`: `VALUES (…),
/// …`; on PostgreSQL, more than one row as `SELECT * FROM unnest(<column>::<type>[], …)`,
/// one array literal per column, which PostgreSQL parses and plans in the time of a
/// short statement however many rows it holds (a list of `VALUES` costs it a typed
/// expression per cell).
fn row_source<'v>(
    s: &mut Sql,
    ints: &[bool],
    n: usize,
    cell: impl Fn(usize, usize) -> Cow<'v, Value>,
) -> Result<(), ReadError> {
    let int = |c: usize| ints[c];
    if s.backend == Backend::Sqlite || n == 1 {
        s.text.push_str("VALUES ");
        for r in 0..n {
            s.text.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..ints.len() {
                if c > 0 {
                    s.text.push_str(", ");
                }
                s.value(&cell(r, c), int(c))?;
            }
            s.text.push(')');
        }
        return Ok(());
    }
    s.text.push_str("SELECT * FROM unnest(");
    let mut array = String::new();
    for c in 0..ints.len() {
        if c > 0 {
            s.text.push_str(", ");
        }
        array.clear();
        array.push('{');
        for r in 0..n {
            if r > 0 {
                array.push(',');
            }
            push_array_element(&mut array, &cell(r, c));
        }
        array.push('}');
        push_escaped(
            &mut s.text,
            &array,
            if int(c) { "int8[]" } else { "text[]" },
        )?;
    }
    s.text.push(')');
    Ok(())
}

/// `v` as an element of an array literal: a number, `NULL`, or text in double quotes
/// (`"` and `\` escaped with a backslash).
fn push_array_element(array: &mut String, v: &Value) {
    let text = |array: &mut String, t: &str| {
        array.push('"');
        for c in t.chars() {
            if c == '"' || c == '\\' {
                array.push('\\');
            }
            array.push(c);
        }
        array.push('"');
    };
    match v {
        Value::Null => array.push_str("NULL"),
        Value::Int(i) => {
            let _ = write!(array, "{i}");
        }
        Value::Text(t) => text(array, t),
        Value::Doc(d) => text(array, &d.json()),
    }
}

/// How a checkpoint row takes a batch's progress.
const CHECKPOINT_MERGE: &str = ") ON CONFLICT (consumer) DO UPDATE SET \
    stream_sequence = CASE WHEN excluded.stream_sequence > rm_checkpoints.stream_sequence \
        THEN excluded.stream_sequence ELSE rm_checkpoints.stream_sequence END, \
    events_applied = rm_checkpoints.events_applied + excluded.events_applied, \
    last_event_us = CASE WHEN excluded.last_event_us > rm_checkpoints.last_event_us \
        THEN excluded.last_event_us ELSE rm_checkpoints.last_event_us END, \
    updated_at_us = excluded.updated_at_us";

/// The statements of a batch as they are written: one script on PostgreSQL, one
/// statement each on SQLite.
struct Script {
    backend: Backend,
    script: String,
    statements: Vec<Statement>,
}

impl Script {
    fn new(backend: Backend) -> Self {
        Self {
            backend,
            script: String::new(),
            statements: Vec::new(),
        }
    }

    fn add(
        &mut self,
        write: impl FnOnce(&mut Sql) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        self.add_checked(None, write)
    }

    fn add_checked(
        &mut self,
        one_row: Option<String>,
        write: impl FnOnce(&mut Sql) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let mut s = Sql {
            backend: self.backend,
            text: std::mem::take(&mut self.script),
            args: Vec::new(),
        };
        write(&mut s)?;
        match self.backend {
            Backend::Postgres => {
                s.text.push_str(";\n");
                self.script = s.text;
            }
            Backend::Sqlite => self.statements.push(Statement {
                sql: s.text,
                args: s.args,
                one_row,
            }),
        }
        Ok(())
    }

    /// Record `moves` in positions table `table`. On PostgreSQL: one statement for the
    /// new positions (another transaction inserting one meanwhile fails it on the key)
    /// and one for the moved ones, which fails the script, naming the table, unless it
    /// moved them all (the count is checked in the statement, so no round trip of its
    /// own). On SQLite: one statement per position, each checked.
    fn moves(&mut self, table: &str, moves: &[Move]) -> Result<(), ReadError> {
        if self.backend == Backend::Sqlite {
            for m in moves {
                let values = [
                    (Value::from(m.stream), false),
                    (Value::Int(m.version), true),
                    (Value::Int(m.before), true),
                ];
                let sql = if m.before == 0 {
                    format!("INSERT INTO {table} (stream_id, version) VALUES ($1, $2)")
                } else {
                    format!("UPDATE {table} SET version = $2 WHERE stream_id = $1 AND version = $3")
                };
                let n = if m.before == 0 { 2 } else { 3 };
                self.statements.push(Statement {
                    sql,
                    args: values[..n].to_vec(),
                    one_row: Some(m.stream.to_string()),
                });
            }
            return Ok(());
        }
        let (inserts, updates): (Vec<&Move>, Vec<&Move>) =
            moves.iter().partition(|m| m.before == 0);
        if !inserts.is_empty() {
            self.add(|s| {
                let _ = write!(s.text, "INSERT INTO {table} (stream_id, version) VALUES ");
                for (i, m) in inserts.iter().enumerate() {
                    s.text.push_str(if i == 0 { "(" } else { ", (" });
                    push_literal(&mut s.text, &Value::from(m.stream), false)?;
                    let _ = write!(s.text, ", {}::int8)", m.version);
                }
                Ok(())
            })?;
        }
        if !updates.is_empty() {
            let n = updates.len();
            self.add(|s| {
                let _ = write!(
                    s.text,
                    "WITH moved AS (UPDATE {table} AS p SET version = u.new FROM (VALUES "
                );
                for (i, m) in updates.iter().enumerate() {
                    s.text.push_str(if i == 0 { "(" } else { ", (" });
                    push_literal(&mut s.text, &Value::from(m.stream), false)?;
                    let _ = write!(s.text, ", {}::int8, {}::int8)", m.version, m.before);
                }
                // The message is built from the count so it is not a constant:
                // PostgreSQL folds constant expressions while planning, and would raise
                // it even when all moved.
                let _ = write!(
                    s.text,
                    ") AS u(stream_id, new, old) WHERE p.stream_id = u.stream_id \
                     AND p.version = u.old RETURNING 1) SELECT CASE WHEN count(*) = {n} THEN 0 \
                     ELSE CAST('projected by another transaction at the same time: ' || \
                     ({n} - count(*)) || ' of {n} positions in {table} had moved; retry' AS int) \
                     END FROM moved"
                );
                Ok(())
            })?;
        }
        Ok(())
    }

    fn finish(self) -> Vec<Statement> {
        match self.backend {
            Backend::Postgres if self.script.is_empty() => Vec::new(),
            Backend::Postgres => vec![Statement {
                sql: self.script,
                args: Vec::new(),
                one_row: None,
            }],
            Backend::Sqlite => self.statements,
        }
    }
}

/// `v1, v2, …` of `values` (`ints[i]`: whether the i-th is an integer).
fn values_list(s: &mut Sql, values: &[Value], ints: &[bool]) -> Result<(), ReadError> {
    for (i, (v, int)) in values.iter().zip(ints).enumerate() {
        if i > 0 {
            s.text.push_str(", ");
        }
        s.value(v, *int)?;
    }
    Ok(())
}

/// Changes of one table that one statement writes ([`crate::change::runs`]: of one kind,
/// updates setting the same columns under the same conditions, no row touched twice),
/// into the tables named with `suffix`.
fn statement(s: &mut Sql, run: &[&Change], suffix: &str) -> Result<(), ReadError> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let table = first.table();
    match first {
        Change::Insert(_) | Change::Upsert(_) => {
            let rows: Vec<&Insert> = run
                .iter()
                .filter_map(|c| match c {
                    Change::Insert(i) | Change::Upsert(i) => Some(i),
                    _ => None,
                })
                .collect();
            insert_rows(s, &rows, suffix)?;
            if matches!(first, Change::Upsert(_)) {
                replace_on_conflict(s, table);
            }
            Ok(())
        }
        Change::Update(_) => {
            let updates: Vec<&Update> = run
                .iter()
                .filter_map(|c| match c {
                    Change::Update(u) => Some(u),
                    _ => None,
                })
                .collect();
            update_rows(s, &updates, suffix)
        }
        Change::Delete(_) => {
            let keys: Vec<Vec<&Value>> = run
                .iter()
                .filter_map(|c| match c {
                    Change::Delete(d) => Some(d.key.iter().collect()),
                    _ => None,
                })
                .collect();
            delete_rows(s, table, &keys, suffix)
        }
        Change::Add(_) => {
            let rows: Vec<(Vec<Value>, Vec<i64>)> = run
                .iter()
                .filter_map(|c| match c {
                    Change::Add(a) => Some(a),
                    _ => None,
                })
                .map(|a| {
                    let mut sums = vec![0; table.columns.len()];
                    for (c, n) in &a.amounts {
                        sums[c.index] += n;
                    }
                    (a.key.clone(), sums)
                })
                .collect();
            counter_upsert(s, table, suffix, 0, &rows)
        }
    }
}

/// `ON CONFLICT (key) DO UPDATE SET` every other column to the inserted value.
fn replace_on_conflict(s: &mut Sql, t: &Table) {
    let _ = write!(
        s.text,
        " ON CONFLICT ({}) DO UPDATE SET ",
        t.primary_key.join(", ")
    );
    let set: Vec<String> = t
        .columns
        .iter()
        .filter(|(n, _)| !t.primary_key.contains(n))
        .map(|(n, _)| format!("{n} = excluded.{n}"))
        .collect();
    s.text.push_str(&set.join(", "));
}

/// `INSERT INTO <t><suffix> (<every column>) VALUES `.
fn insert_head(s: &mut Sql, t: &Table, suffix: &str) {
    let names: Vec<&str> = t.columns.iter().map(|(n, _)| *n).collect();
    let _ = write!(
        s.text,
        "INSERT INTO {}{suffix} ({}) ",
        t.name,
        names.join(", ")
    );
}

/// One `INSERT` of rows of one table.
fn insert_rows(s: &mut Sql, rows: &[&Insert], suffix: &str) -> Result<(), ReadError> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    insert_head(s, first.table, suffix);
    row_source(s, &column_ints(first.table), rows.len(), |r, c| {
        Cow::Borrowed(&rows[r].values[c])
    })
}

/// Updates of one table setting the same columns under the same conditions, each of
/// its own group, as one statement: their values are a row source named `v` (the group,
/// then each set value, then each condition's bound), joined to the table by group:
/// `WITH v (g, s0, …, w0, …) AS (…) UPDATE t SET c = v.s0, n = t.n + v.s1 FROM v WHERE
/// t.g = v.g AND (t.c IS NULL OR t.c <= v.w0) AND t.d IS NULL`.
fn update_rows(s: &mut Sql, updates: &[&Update], suffix: &str) -> Result<(), ReadError> {
    let Some(first) = updates.first() else {
        return Ok(());
    };
    debug_assert!(
        !first.set.is_empty(),
        "{}: an update sets something",
        first.table.name
    );
    let group = first.table.group_col();
    let bounds: Vec<usize> = (first.when.iter().enumerate())
        .filter(|(_, c)| matches!(c, Cond::NullOrAtMost(..)))
        .map(|(i, _)| i)
        .collect();
    let mut names = vec!["g".to_string()];
    names.extend((0..first.set.len()).map(|i| format!("s{i}")));
    names.extend((0..bounds.len()).map(|i| format!("w{i}")));
    let mut ints = vec![group.int];
    ints.extend(
        first
            .set
            .iter()
            .map(|(c, set)| c.int || matches!(set, Set::Add(_))),
    );
    ints.extend(bounds.iter().map(|_| true));
    let _ = write!(s.text, "WITH v ({}) AS (", names.join(", "));
    let cell = |r: usize, i: usize| {
        let u = updates[r];
        match i {
            0 => Cow::Borrowed(&u.key),
            i if i <= u.set.len() => match &u.set[i - 1].1 {
                Set::To(v) => Cow::Borrowed(v),
                Set::Add(n) => Cow::Owned(Value::Int(*n)),
            },
            i => match u.when.get(bounds[i - 1 - u.set.len()]) {
                Some(Cond::NullOrAtMost(_, w)) => Cow::Owned(Value::Int(*w)),
                _ => Cow::Owned(Value::Null),
            },
        }
    };
    row_source(s, &ints, updates.len(), cell)?;
    let t = format!("{}{suffix}", first.table.name);
    let _ = write!(s.text, ") UPDATE {t} SET ");
    for (k, (c, set)) in first.set.iter().enumerate() {
        let sep = if k > 0 { ", " } else { "" };
        let _ = match set {
            Set::To(_) => write!(s.text, "{sep}{0} = v.s{k}", c.name),
            Set::Add(_) => write!(s.text, "{sep}{0} = {t}.{0} + v.s{k}", c.name),
        };
    }
    let _ = write!(s.text, " FROM v WHERE {t}.{0} = v.g", group.name);
    let mut w = 0;
    for cond in &first.when {
        let _ = match cond {
            Cond::IsNull(c) => write!(s.text, " AND {t}.{} IS NULL", c.name),
            Cond::NullOrAtMost(c, _) => {
                w += 1;
                write!(
                    s.text,
                    " AND ({t}.{0} IS NULL OR {t}.{0} <= v.w{1})",
                    c.name,
                    w - 1
                )
            }
        };
    }
    Ok(())
}

/// A query for the rows of a set of keys (a memo's customers, a batch's streams). On
/// PostgreSQL the keys are bound as one array (`= ANY($1)`): one statement whatever their
/// number, which a connection prepares once. (An `IN ($1, …, $n)` list was a statement
/// of its own for every n: a W1 run saw 276, more than sqlx's cache of 100 per connection
/// holds, so they were prepared again as they were evicted, each planned for its
/// values.) On SQLite: `IN ($1, …, $n)`, each key bound.
pub(crate) struct KeysQuery<'k> {
    pub sql: String,
    pub keys: &'k [&'k str],
}

/// `col` is one of `n` keys bound from `$1` ([`KeysQuery`]).
fn one_of(backend: Backend, col: &str, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("{col} = ANY($1)"),
        Backend::Sqlite => {
            let marks: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
            format!("{col} IN ({})", marks.join(", "))
        }
    }
}

/// The rows of memo table `t` (named with `suffix`) of `customers`.
pub(crate) fn memo_query<'k>(
    backend: Backend,
    t: &Table,
    suffix: &str,
    customers: &'k [&'k str],
) -> KeysQuery<'k> {
    let names: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    KeysQuery {
        sql: format!(
            "SELECT {} FROM {}{suffix} WHERE {}",
            names.join(", "),
            t.name,
            one_of(backend, names[0], customers.len())
        ),
        keys: customers,
    }
}

/// The query reading the positions of `streams` in each target's positions table:
/// rows of (target, stream, version).
pub(crate) fn positions_query<'k>(
    backend: Backend,
    tables: &[String],
    streams: &'k [&'k str],
) -> KeysQuery<'k> {
    let one_of = one_of(backend, "stream_id", streams.len());
    // One query for every read model (the keys are shared).
    let sql = tables
        .iter()
        .enumerate()
        .map(|(t, table)| {
            format!("SELECT CAST({t} AS BIGINT), stream_id, version FROM {table} WHERE {one_of}")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    KeysQuery { sql, keys: streams }
}

/// Every `CREATE TABLE` and key of a projection's tables, and the statements a rebuild
/// and a verification run on them.
impl Projection {
    /// Every statement creating the tables named with `suffix` (`""` for the live
    /// tables): [`Projection::tables_ddl`] then [`Projection::keys_ddl`].
    pub fn ddl(&self, suffix: &str) -> Vec<String> {
        let mut out = self.tables_ddl(suffix);
        out.extend(self.keys_ddl(suffix));
        out
    }

    /// `CREATE TABLE` statements, without keys or indexes (a rebuild bulk-loads first).
    pub fn tables_ddl(&self, suffix: &str) -> Vec<String> {
        self.tables_ddl_where(suffix, |_| true, true, None)
    }

    /// With `as_created: Some(m)`, each table as migration `m` created it: with the
    /// columns a later migration dropped ([`DROPPED_COLUMNS`]), without those a later
    /// one added ([`ADDED_COLUMNS`]); a striped counter's stripe last
    /// ([`Table::striped`]).
    pub(crate) fn tables_ddl_where(
        &self,
        suffix: &str,
        keep: impl Fn(&Table) -> bool,
        positions: bool,
        as_created: Option<i64>,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .tables_as_of(as_created)
            .iter()
            .filter(|t| keep(t))
            .map(|t| {
                let dropped = DROPPED_COLUMNS
                    .iter()
                    .filter(|d| d.table == t.name && as_created.is_some_and(|m| d.migration > m));
                let added_later = |name: &str| {
                    ADDED_COLUMNS.iter().any(|a| {
                        a.table == t.name
                            && a.column == name
                            && as_created.is_some_and(|m| a.migration > m)
                    })
                };
                let stripe = t
                    .striped(as_created)
                    .then_some((STRIPE, "BIGINT NOT NULL DEFAULT 0"));
                let cols: Vec<String> = t
                    .columns
                    .iter()
                    .copied()
                    .filter(|(name, _)| !added_later(name))
                    .chain(dropped.map(|d| (d.column, d.definition)))
                    .chain(stripe)
                    .map(|(name, ty)| format!("{name} {ty}"))
                    .collect();
                format!("CREATE TABLE {}{suffix} ({})", t.name, cols.join(", "))
            })
            .collect();
        if positions {
            out.push(format!(
                "CREATE TABLE {}{suffix} (stream_id TEXT NOT NULL, version BIGINT NOT NULL)",
                self.positions_table()
            ));
        }
        out
    }

    /// The keys (unique indexes, which both backends accept as `ON CONFLICT` targets)
    /// and indexes: built after a bulk load, which is faster than maintaining them.
    pub fn keys_ddl(&self, suffix: &str) -> Vec<String> {
        self.keys_ddl_where(suffix, |_| true, true, None)
    }

    /// The keys and indexes of one table (`name` without suffix; the positions table's
    /// name for its key).
    pub fn table_keys_ddl(&self, name: &str, suffix: &str) -> Vec<String> {
        let positions = name == self.positions_table();
        self.keys_ddl_where(suffix, |t| t.name == name, positions, None)
    }

    /// The projection's tables; with `Some(m)`, as migration `m` knew them (a table a
    /// later migration retired first, where it was).
    fn tables_as_of(&self, m: Option<i64>) -> Vec<Table> {
        let retired = crate::schema::RETIRED_TABLES
            .iter()
            .filter(|(p, t, dropped)| {
                *p == self.name && m.is_some_and(|m| t.since <= m && *dropped > m)
            })
            .map(|(_, t, _)| *t);
        retired.chain(self.tables.iter().copied()).collect()
    }

    pub(crate) fn keys_ddl_where(
        &self,
        suffix: &str,
        keep: impl Fn(&Table) -> bool,
        positions: bool,
        as_created: Option<i64>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for t in self.tables_as_of(as_created).iter().filter(|t| keep(t)) {
            let striped = t.striped(as_created);
            let stripe = if striped { [STRIPE].as_slice() } else { &[] };
            out.push(format!(
                "CREATE UNIQUE INDEX {}{suffix}_key ON {}{suffix} ({})",
                t.name,
                t.name,
                [t.primary_key, stripe].concat().join(", ")
            ));
            if striped {
                // What a fold looks for: the rows of stripes but 0, few between folds.
                out.push(format!(
                    "CREATE INDEX {}{suffix}_striped ON {}{suffix} ({STRIPE}) \
                     WHERE {STRIPE} <> 0",
                    t.name, t.name
                ));
            }
            for (ix, cols) in t.indexes.iter().filter(|(ix, _)| {
                // As migration `m` created it: without the indexes added later.
                !as_created.is_some_and(|m| {
                    ADDED_INDEXES
                        .iter()
                        .any(|a| a.table == t.name && a.index == *ix && a.migration > m)
                })
            }) {
                out.push(format!(
                    "CREATE INDEX {}{suffix}_{ix} ON {}{suffix} ({cols})",
                    t.name, t.name
                ));
            }
        }
        if positions {
            let positions = self.positions_table();
            out.push(format!(
                "CREATE UNIQUE INDEX {positions}{suffix}_key ON {positions}{suffix} (stream_id)"
            ));
        }
        out
    }
}

/// `ALTER TABLE … ADD COLUMN` of a column a migration added, as its table declares it.
pub(crate) fn add_column(a: &AddedColumn) -> String {
    let definition = crate::schema::PROJECTIONS
        .iter()
        .flat_map(|p| p.tables.iter())
        .filter(|t| t.name == a.table)
        .flat_map(|t| t.columns.iter())
        .find(|(name, _)| *name == a.column)
        .map_or("", |(_, ty)| *ty);
    format!(
        "ALTER TABLE {} ADD COLUMN {} {definition}",
        a.table, a.column
    )
}

/// `ALTER TABLE … DROP COLUMN` of a column a migration dropped.
pub(crate) fn drop_column(d: &DroppedColumn) -> String {
    format!("ALTER TABLE {} DROP COLUMN {}", d.table, d.column)
}

/// `DROP TABLE IF EXISTS`.
pub(crate) fn drop_table(name: &str) -> String {
    format!("DROP TABLE IF EXISTS {name}")
}

/// Rename a table.
pub(crate) fn rename(from: &str, to: &str) -> String {
    format!("ALTER TABLE {from} RENAME TO {to}")
}

/// Lock a table against every other transaction until this one ends (PostgreSQL).
pub(crate) fn lock(name: &str) -> String {
    format!("LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
}

/// Every row of `t` (named with `suffix`) with each column as text, in key order; a
/// striped counter's stripes summed, one row per key.
pub(crate) fn select_as_text(t: &Table, suffix: &str) -> String {
    let keys = t.primary_key.join(", ");
    let striped = t.striped(None);
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|(c, _)| match striped && !t.primary_key.contains(c) {
            true => format!("CAST(CAST(sum({c}) AS BIGINT) AS TEXT) AS {c}"),
            false => format!("CAST({c} AS TEXT) AS {c}"),
        })
        .collect();
    let group = match striped {
        true => format!(" GROUP BY {keys}"),
        false => String::new(),
    };
    format!(
        "SELECT {} FROM {}{suffix}{group} ORDER BY {keys}",
        cols.join(", "),
        t.name,
    )
}

/// `(SELECT key, CAST(sum(amount) AS BIGINT) AS amount, … FROM t GROUP BY key)`: the
/// rows of counter `t` with their stripes summed, as a view reads them.
pub(crate) fn summed(t: &Table) -> String {
    let keys = t.primary_key.join(", ");
    let amounts: Vec<String> = amount_names(t)
        .map(|c| format!("CAST(sum({c}) AS BIGINT) AS {c}"))
        .collect();
    format!(
        "(SELECT {keys}, {} FROM {} GROUP BY {keys})",
        amounts.join(", "),
        t.name
    )
}

/// Every position of a positions table, as text.
pub(crate) fn select_positions(table: &str) -> String {
    format!("SELECT stream_id, CAST(version AS TEXT) FROM {table}")
}

/// The zone the KPI ledger counts local days in.
pub(crate) const LEDGER_ZONE: &str = "SELECT time_zone FROM rm_kept WHERE read_model = 'kpis'";

/// Set the zone analytics counts local days in (the KPI ledger's and the funnel's); if
/// it has counted events, both are incomplete until rebuilt.
pub(crate) fn set_ledger_zone(zone: &crate::calendar::Calendar) -> String {
    format!(
        "UPDATE rm_kept SET time_zone = CASE WHEN read_model = 'kpis' THEN '{}' END, \
         complete = CASE WHEN EXISTS (SELECT 1 FROM rm_analytics_positions) THEN 0 \
         ELSE complete END WHERE read_model IN ('analytics', 'kpis')",
        zone.to_string().replace('\'', "")
    )
}

/// Record that read model `name`'s kept aggregates hold the whole log (after a rebuild).
pub(crate) fn mark_complete(name: &str) -> String {
    format!(
        "UPDATE rm_kept SET complete = 1 WHERE read_model = '{}'{}",
        name.replace('\'', ""),
        // The KPI ledger is part of analytics.
        if name == "analytics" {
            " OR read_model = 'kpis'"
        } else {
            ""
        }
    )
}

/// Take the transaction-scoped advisory lock `key` (PostgreSQL).
pub(crate) fn advisory_xact_lock(key: i64) -> String {
    format!("SELECT pg_advisory_xact_lock({key})")
}

/// `COPY` of rows of `columns` into `name` (PostgreSQL bulk load).
pub(crate) fn copy_in(name: &str, columns: &[(&str, &str)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    format!("COPY {name} ({}) FROM STDIN", names.join(", "))
}

/// An `INSERT` of one row of `columns` into `name` with bound values (SQLite bulk load).
pub(crate) fn insert_row(name: &str, columns: &[(&str, &str)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let marks: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {name} ({}) VALUES ({})",
        names.join(", "),
        marks.join(", ")
    )
}

/// The SQL creating the live tables declared `since` a migration (1001: with the
/// positions and service tables).
pub fn migration_sql(since: i64) -> String {
    let first = since == 1001;
    let mut sql: Vec<String> = if first {
        crate::schema::SERVICE_DDL
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        Vec::new()
    };
    for p in crate::schema::PROJECTIONS {
        sql.extend(p.tables_ddl_where("", |t| t.since == since, first, Some(since)));
        sql.extend(p.keys_ddl_where("", |t| t.since == since, first, Some(since)));
    }
    for a in ADDED_COLUMNS.iter().filter(|a| a.migration == since) {
        sql.push(add_column(a));
    }
    for a in ADDED_INDEXES.iter().filter(|a| a.migration == since) {
        let cols = crate::schema::PROJECTIONS
            .iter()
            .flat_map(|p| p.tables.iter())
            .filter(|t| t.name == a.table)
            .flat_map(|t| t.indexes.iter())
            .find(|(ix, _)| *ix == a.index)
            .map(|(_, cols)| *cols)
            .expect("an added index is declared");
        sql.push(format!(
            "CREATE INDEX {t}_{ix} ON {t} ({cols})",
            t = a.table,
            ix = a.index
        ));
    }
    for (_, steps) in crate::schema::MIGRATION_STEPS
        .iter()
        .filter(|m| m.0 == since)
    {
        sql.extend(steps.iter().map(|s| s.to_string()));
    }
    for d in DROPPED_COLUMNS.iter().filter(|d| d.migration == since) {
        sql.push(drop_column(d));
    }
    for (_, t, _) in crate::schema::RETIRED_TABLES
        .iter()
        .filter(|r| r.2 == since)
    {
        sql.push(format!("DROP TABLE {}", t.name));
    }
    if since == STRIPES_SINCE {
        sql.extend(stripe_counters());
    }
    sql.join(";\n") + ";\n"
}

/// Migration [`STRIPES_SINCE`]: every counter table made again with its stripe (its rows
/// in stripe 0). Made again rather than altered: its key's index must go, and after a
/// rebuild that index carries the rebuild's name. The views over the tables go first
/// (PostgreSQL refuses to drop a table a view reads; the read store makes them again).
/// Each table is renamed before it is copied, which on PostgreSQL waits for the
/// transactions writing it and keeps later ones out until the migration commits (a copy
/// alone could miss amounts a transaction committed just before the drop); tables in
/// name order, the order a projector's transaction adds to them, so neither waits for
/// the other in a circle.
fn stripe_counters() -> Vec<String> {
    let mut sql = crate::views::drop_statements(Backend::Postgres);
    let at = Some(STRIPES_SINCE);
    let mut counters: Vec<(Projection, &Table)> = (crate::schema::PROJECTIONS.iter())
        .flat_map(|p| p.tables.iter().map(move |t| (*p, t)))
        .filter(|(_, t)| t.kind == Kind::Counter)
        .collect();
    counters.sort_by_key(|(_, t)| t.name);
    for (p, t) in counters {
        let (name, old) = (t.name, format!("{}_1009", t.name));
        let only = |u: &Table| u.name == name;
        sql.push(rename(name, &old));
        sql.extend(p.tables_ddl_where("", only, false, at));
        let columns = column_names(t).join(", ");
        sql.push(format!(
            "INSERT INTO {name} ({columns}) SELECT {columns} FROM {old}"
        ));
        sql.push(drop_table(&old));
        sql.extend(p.keys_ddl_where("", only, false, at));
        sql.push(format!("ANALYZE {name}"));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Cond, Insert, Update};
    use crate::schema::{
        col, ANALYTICS_OWNERS, CUSTOMERS, OWNERSHIP, OWNERSHIP_PERIODS, STAGE_TRANSITIONS,
    };

    fn render(backend: Backend, c: &Change, suffix: &str) -> Sql {
        let mut s = Sql {
            backend,
            text: String::new(),
            args: Vec::new(),
        };
        statement(&mut s, &[c], suffix).unwrap();
        s
    }

    /// The amounts a batch adds to one counter row are summed into one row; rows come in
    /// key order, whatever order the batch added them in.
    #[test]
    fn counters_are_summed_per_row_and_written_in_key_order() {
        use crate::change::Add;
        use crate::schema::FUNNEL_NOW;
        let n = col(&FUNNEL_NOW, "customers");
        let add = |value: &str, k: i64| {
            let key = vec![
                Value::from("region"),
                Value::from(value),
                Value::from("lead"),
            ];
            Add::to(&FUNNEL_NOW, key).add(n, k)
        };
        let mut counters = Counters::default();
        for a in [
            add("west", 1),
            add("east", 1),
            add("west", 1),
            add("east", -1),
        ] {
            counters.add(0, &a);
        }
        let mut out = Script::new(Backend::Postgres);
        let targets = [(2, crate::schema::ANALYTICS, "")];
        counters.render(&mut out, &targets, 3).unwrap();
        let sql = &out.finish()[0].sql;
        assert_eq!(
            sql,
            "INSERT INTO rm_funnel_now (kind, value, stage, customers, stripe) SELECT * FROM \
             unnest((E'{\"region\",\"region\"}'::text[]), (E'{\"east\",\"west\"}'::text[]), \
             (E'{\"lead\",\"lead\"}'::text[]), (E'{0,2}'::int8[]), (E'{3,3}'::int8[])) \
             ON CONFLICT (kind, value, stage, stripe) DO UPDATE SET \
             customers = rm_funnel_now.customers + excluded.customers;\n"
        );
    }

    /// A fold moves a counter's striped rows into stripe 0 in one statement on
    /// PostgreSQL (skipping rows a projector holds), and in an upsert then a delete on
    /// SQLite.
    #[test]
    fn a_fold_sums_the_stripes_into_stripe_zero() {
        use crate::schema::FUNNEL_NOW;
        let sums = "SELECT kind, value, stage, CAST(sum(customers) AS BIGINT), 0";
        let merge = "ON CONFLICT (kind, value, stage, stripe) DO UPDATE SET \
                     customers = rm_funnel_now.customers + excluded.customers";
        let group = "GROUP BY kind, value, stage ORDER BY kind, value, stage";
        assert_eq!(
            fold(Backend::Postgres, &FUNNEL_NOW),
            [format!(
                "WITH gone AS (DELETE FROM rm_funnel_now WHERE ctid = ANY(ARRAY(SELECT ctid \
                 FROM rm_funnel_now WHERE stripe <> 0 FOR UPDATE SKIP LOCKED)) RETURNING \
                 kind, value, stage, customers) INSERT INTO rm_funnel_now (kind, value, \
                 stage, customers, stripe) {sums} FROM gone {group} {merge}"
            )]
        );
        assert_eq!(
            fold(Backend::Sqlite, &FUNNEL_NOW),
            [
                format!(
                    "INSERT INTO rm_funnel_now (kind, value, stage, customers, stripe) {sums} \
                     FROM rm_funnel_now WHERE stripe <> 0 {group} {merge}"
                ),
                "DELETE FROM rm_funnel_now WHERE stripe <> 0".to_string()
            ]
        );
    }

    /// Where every change of a table in a batch replaces or removes a whole row, only
    /// each key's last one is written: an upsert undone by a delete writes nothing of it,
    /// a delete undone by an upsert deletes nothing.
    #[test]
    fn only_the_last_replacement_of_each_row_is_written() {
        use crate::change::Delete;
        use crate::schema::KPI_WINS;
        let win = |customer: &str, manager: &str| {
            Insert::into(&KPI_WINS)
                .set(col(&KPI_WINS, "at_us"), 5)
                .set(col(&KPI_WINS, "customer_id"), customer)
                .set(col(&KPI_WINS, "n"), 0)
                .set(col(&KPI_WINS, "manager_id"), manager)
                .upsert()
        };
        let gone = |customer: &str| {
            let key = vec![Value::Int(5), Value::from(customer), Value::Int(0)];
            Delete::from(&KPI_WINS, key)
        };
        let changes = vec![
            win("b", "m1"),
            gone("a"),
            win("b", "m2"),
            win("c", "m1"),
            gone("c"),
        ];
        for backend in [Backend::Postgres, Backend::Sqlite] {
            let statements = batch_of(backend, crate::schema::ANALYTICS, changes.clone(), "");
            let sql: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
            let text = sql.join("\n");
            assert_eq!(sql.len(), if backend == Backend::Sqlite { 2 } else { 1 });
            assert_eq!(text.matches("INSERT INTO rm_kpi_wins").count(), 1, "{text}");
            assert_eq!(text.matches("DELETE FROM rm_kpi_wins").count(), 1, "{text}");
            let args: Vec<&Value> = statements
                .iter()
                .flat_map(|s| s.args.iter().map(|a| &a.0))
                .collect();
            match backend {
                Backend::Postgres => {
                    assert!(
                        text.contains("(E'm2'::text)") && !text.contains("m1"),
                        "{text}"
                    );
                    let deleted = &text[text.find("DELETE").unwrap()..];
                    assert!(deleted.contains("'a'") && deleted.contains("'c'"), "{text}");
                    assert!(!deleted.contains("'b'"), "{text}");
                }
                Backend::Sqlite => {
                    assert!(
                        args.contains(&&Value::from("m2")) && !args.contains(&&Value::from("m1"))
                    );
                    assert_eq!(
                        statements[1].args.len(),
                        6,
                        "two keys of three columns deleted"
                    );
                }
            }
        }
    }

    /// Rows written as arrays (PostgreSQL, several rows at once) arrive as they were,
    /// whatever their text holds: quotes, backslashes, braces, commas, the word NULL,
    /// an empty string, other scripts; and NULLs of both types.
    #[tokio::test]
    async fn rows_written_as_arrays_arrive_as_they_were() {
        use crate::schema::{ANALYTICS, KPI_WINS};
        use sqlx::Connection;
        let db = crm_eventstore::testing::TestDatabase::create().await;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        for ddl in ANALYTICS.tables_ddl("") {
            sqlx::raw_sql(&ddl).execute(&mut conn).await.unwrap();
        }
        let texts = [
            "a\"b",
            "back\\slash",
            "{x,y}",
            "NULL",
            "",
            "it's",
            "公海 保有量",
            " sp ",
        ];
        let rows: Vec<Insert> = texts
            .iter()
            .enumerate()
            .map(|(n, t)| {
                Insert::into(&KPI_WINS)
                    .set(col(&KPI_WINS, "at_us"), n as i64 - 3)
                    .set(col(&KPI_WINS, "customer_id"), *t)
                    .set(col(&KPI_WINS, "n"), 0)
                    .set(col(&KPI_WINS, "manager_id"), format!("m{n}"))
                    .set(col(&KPI_WINS, "lead_until_us"), (n % 2 == 0).then_some(7))
                    .set(col(&KPI_WINS, "day"), 1)
            })
            .collect();
        let mut out = Script::new(Backend::Postgres);
        let refs: Vec<&Insert> = rows.iter().collect();
        out.add(|s| insert_rows(s, &refs, "")).unwrap();
        let script = &out.finish()[0].sql;
        assert!(script.contains("unnest("), "{script}");
        sqlx::raw_sql(script).execute(&mut conn).await.unwrap();
        type Win = (i64, String, String, Option<i64>, Option<i64>);
        let back: Vec<Win> = sqlx::query_as(
            "SELECT at_us, customer_id, manager_id, lead_until_us, lead_next_us \
             FROM rm_kpi_wins ORDER BY at_us",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let want: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(n, t)| {
                let until = (n % 2 == 0).then_some(7);
                (n as i64 - 3, t.to_string(), format!("m{n}"), until, None)
            })
            .collect();
        assert_eq!(back, want);
    }

    /// A random history of changes to `rm_customers` and `rm_ownership_periods` over a
    /// few customers (so a batch touches each of them several times): inserts, upserts,
    /// deletes, and updates of each kind (set, add, conditional on NULL, conditional on at
    /// most; a condition on a column it sets, and on one that another update sets; an
    /// update of a group of several rows).
    fn history(seed: u64, n: usize, customers: usize) -> Vec<Change> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let c = |name: &'static str| col(&CUSTOMERS, name);
        let mut present = vec![false; customers];
        let mut periods = vec![0i64; customers];
        let mut out = Vec::new();
        while out.len() < n {
            let k = next(customers as u64) as usize;
            let id = format!("c{k}");
            let row = |stage: u64| {
                Insert::into(&CUSTOMERS)
                    .set(c("customer_id"), id.as_str())
                    .set(c("customer_type"), "person")
                    .set(c("display_name"), format!("n{stage}"))
                    .set(c("region"), "east")
                    .set(c("first_touch_channel"), "web")
                    .set(c("stage"), format!("s{stage}"))
                    .set(c("value_tier"), "low")
                    .set(c("aum_minor"), 100)
                    .set(c("registered_at_us"), 1)
            };
            let update = Update::of(&CUSTOMERS, id.as_str());
            let owner = (next(3) > 0).then(|| format!("m{}", next(4)));
            let change = match next(12) {
                10 => period(k, &mut periods, Some(format!("m{}", next(4)))),
                11 => period(k, &mut periods, None),
                0 if !present[k] => row(next(9)).insert(),
                0 | 1 => row(next(9)).upsert(),
                2 => crate::change::Delete::from(&CUSTOMERS, vec![Value::from(id.as_str())]),
                3 | 4 => {
                    let at = next(10) as i64;
                    let last = c("last_contact_at_us");
                    let follow_up = (next(2) == 0).then(|| at + 5);
                    Change::Update(
                        update
                            .when(Cond::NullOrAtMost(last, at))
                            .set(last, at)
                            .set(c("next_follow_up_us"), follow_up),
                    )
                }
                5 => Change::Update(update.set(c("owner_id"), owner).set(c("stage"), "s0")),
                6 => Change::Update(update.add(c("aum_minor"), next(7) as i64 - 3)),
                7 => Change::Update(
                    update
                        .when(Cond::IsNull(c("owner_id")))
                        .set(c("owner_id"), owner),
                ),
                8 => Change::Update(
                    update
                        .when(Cond::IsNull(c("owner_id")))
                        .set(c("display_name"), format!("pool{}", next(3))),
                ),
                _ => Change::Update(update.set(c("stage"), format!("s{}", next(3)))),
            };
            match &change {
                Change::Insert(i) | Change::Upsert(i) if i.table.name == CUSTOMERS.name => {
                    present[k] = true
                }
                Change::Delete(_) => present[k] = false,
                _ => {}
            }
            out.push(change);
        }
        out
    }

    /// A change to customer `k`'s ownership periods: the next one opened by `manager`, or
    /// (`None`) the open ones closed, a group of several rows where several are open.
    fn period(k: usize, periods: &mut [i64], manager: Option<String>) -> Change {
        let c = |c: &'static str| col(&OWNERSHIP_PERIODS, c);
        let id = format!("c{k}");
        let Some(manager) = manager else {
            return Change::Update(
                Update::of(&OWNERSHIP_PERIODS, id)
                    .when(Cond::IsNull(c("to_us")))
                    .set(c("to_us"), periods[k] + 1)
                    .set(c("end_event"), "ReleasedToPool"),
            );
        };
        periods[k] += 1;
        Insert::into(&OWNERSHIP_PERIODS)
            .set(c("customer_id"), id)
            .set(c("start_version"), periods[k])
            .set(c("manager_id"), manager)
            .set(c("team"), "t")
            .set(c("region"), "east")
            .set(c("from_us"), periods[k])
            .set(c("start_event"), "OwnerAssigned")
            .set(c("started_by"), "u")
            .set(c("start_event_id"), format!("e{k}-{}", periods[k]))
            .insert()
    }

    /// The statements writing `changes` to `projection`'s tables named with `suffix`, as
    /// one batch (its counters into stripe 0).
    fn batch_of(
        backend: Backend,
        projection: Projection,
        changes: Vec<Change>,
        suffix: &str,
    ) -> Vec<Statement> {
        let changes = vec![(0, changes)];
        let index = (crate::schema::PROJECTIONS.iter())
            .position(|p| p.name == projection.name)
            .unwrap();
        let targets = [(index, projection, suffix)];
        let plan = crate::plan::plan(&[], 1, &std::collections::HashMap::new());
        let mut out = Script::new(backend);
        let b = Batch {
            events: &[],
            plan: &plan,
            targets: &targets,
            changes: &changes,
            dead_letters: false,
            consumers: &[],
            stripe: 0,
            now_us: 0,
        };
        super::changes(&mut out, &b).unwrap();
        out.finish()
    }

    /// Table `t` (named with `suffix`) as text, row by row.
    async fn rows(conn: &mut crate::store::Conn<'_>, t: &Table, suffix: &str) -> Vec<Vec<String>> {
        use sqlx::Row;
        let sql = select_as_text(t, suffix);
        let text = |r: &dyn Fn(usize) -> Option<String>| {
            (0..t.columns.len())
                .map(|i| r(i).unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
        };
        match conn {
            crate::store::Conn::Postgres(c) => sqlx::query(&sql).fetch_all(&mut **c).await,
            crate::store::Conn::Sqlite(c) => {
                let rows = sqlx::query(&sql).fetch_all(&mut **c).await.unwrap();
                return rows.iter().map(|r| text(&|i| r.get(i))).collect();
            }
        }
        .unwrap()
        .iter()
        .map(|r| text(&|i| r.get(i)))
        .collect()
    }

    /// Changes written in runs (several rows a statement; a customer's changes moved
    /// past other customers') leave the table as the same changes written one statement
    /// each, in order: on both backends, for random histories in which each customer
    /// comes back several times within a batch.
    #[tokio::test]
    async fn changes_written_in_runs_leave_what_one_by_one_leaves() {
        use sqlx::Connection;
        let db = crm_eventstore::testing::TestDatabase::create().await;
        let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let mut lite = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let (mut changes_written, mut statements_written) = (0, 0);
        for seed in 0..60u64 {
            let changes = history(seed, 80, 5 + seed as usize % 4 * 10);
            let one_by_one = format!("_one{seed}");
            let in_runs = format!("_runs{seed}");
            for (backend, mut conn) in [
                (Backend::Postgres, crate::store::Conn::Postgres(&mut pg)),
                (Backend::Sqlite, crate::store::Conn::Sqlite(&mut lite)),
            ] {
                for suffix in [&one_by_one, &in_runs] {
                    for ddl in OWNERSHIP.ddl(suffix) {
                        conn.execute(&ddl).await.unwrap();
                    }
                }
                for c in &changes {
                    for s in batch_of(backend, OWNERSHIP, vec![c.clone()], &one_by_one) {
                        conn.run(&s).await.unwrap();
                    }
                }
                let statements = batch_of(backend, OWNERSHIP, changes.clone(), &in_runs);
                let text: String = statements.iter().map(|s| s.sql.as_str()).collect();
                changes_written += changes.len();
                statements_written += match backend {
                    Backend::Postgres => text.matches(";\n").count(),
                    Backend::Sqlite => statements.len(),
                };
                for s in &statements {
                    conn.run(s).await.unwrap();
                }
                for t in [&CUSTOMERS, &OWNERSHIP_PERIODS] {
                    let want = rows(&mut conn, t, &one_by_one).await;
                    assert!(!want.is_empty(), "seed {seed}: the history leaves rows");
                    let got = rows(&mut conn, t, &in_runs).await;
                    assert_eq!(got, want, "seed {seed} on {backend:?}: {changes:#?}");
                }
            }
        }
        assert!(
            statements_written * 10 < changes_written * 9,
            "{statements_written} statements wrote {changes_written} changes"
        );
    }

    /// A key-set query (a batch's positions, a memo's rows) is one statement on
    /// PostgreSQL whatever the number of keys, so a connection prepares it once; on both
    /// backends it reads back exactly the rows of its keys, whatever characters they hold.
    #[tokio::test]
    async fn key_queries_are_one_statement_and_read_exactly_their_keys() {
        use sqlx::Connection;
        let tables = ["rm_ownership_positions_k".to_string()];
        let memo =
            |keys| memo_query(Backend::Postgres, &crate::schema::KPI_CUSTOMERS, "", keys).sql;
        let positions = |keys| positions_query(Backend::Postgres, &tables, keys).sql;
        assert_eq!(memo(&["a"]), memo(&["a", "b", "c"]));
        assert_eq!(positions(&["a"]), positions(&["a", "b", "c"]));

        let db = crm_eventstore::testing::TestDatabase::create().await;
        let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let mut lite = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let stored = ["a\"b", "c,d", "e\\f", "{g}", "NULL", "h'i", " j "];
        for (backend, mut conn) in [
            (Backend::Postgres, crate::store::Conn::Postgres(&mut pg)),
            (Backend::Sqlite, crate::store::Conn::Sqlite(&mut lite)),
        ] {
            for ddl in OWNERSHIP.ddl("_k") {
                conn.execute(&ddl).await.unwrap();
            }
            for (version, stream) in stored.iter().enumerate() {
                let insert = Statement {
                    sql:
                        "INSERT INTO rm_ownership_positions_k (stream_id, version) VALUES ($1, $2)"
                            .into(),
                    args: vec![
                        (Value::from(*stream), false),
                        (Value::Int(version as i64), true),
                    ],
                    one_row: None,
                };
                conn.run(&insert).await.unwrap();
            }
            let asked = ["a\"b", "e\\f", "{g}", "NULL", "absent", "h'i"];
            let query = positions_query(backend, &tables, &asked);
            let mut got = conn.fetch_iti(&query).await.unwrap();
            got.sort();
            let mut want: Vec<(i64, String, i64)> = (stored.iter().enumerate())
                .filter(|(_, s)| asked.contains(s))
                .map(|(v, s)| (0, s.to_string(), v as i64))
                .collect();
            want.sort();
            assert_eq!(got, want, "{backend:?}");
        }
    }

    #[test]
    fn literals_mean_what_bound_parameters_would() {
        let lit = |v: Value, int: bool| {
            let mut s = String::new();
            push_literal(&mut s, &v, int).map(|()| s)
        };
        assert_eq!(lit(Value::Int(-7), true).unwrap(), "(-7::int8)");
        assert_eq!(
            lit(Value::Text("it's a \\ test $1".into()), false).unwrap(),
            "(E'it''s a \\\\ test $1'::text)"
        );
        assert_eq!(lit(Value::Null, true).unwrap(), "(NULL::int8)");
        assert_eq!(lit(Value::Null, false).unwrap(), "(NULL::text)");
        assert!(lit(Value::Text("a\0b".into()), false).is_err());
    }

    #[test]
    fn each_change_renders_for_both_backends_into_the_suffixed_tables() {
        let c = Insert::into(&STAGE_TRANSITIONS)
            .set(col(&STAGE_TRANSITIONS, "customer_id"), "c1")
            .set(col(&STAGE_TRANSITIONS, "to_stage"), "lead")
            .insert();
        let pg = render(Backend::Postgres, &c, "_r1");
        assert!(pg
            .text
            .starts_with("INSERT INTO rm_stage_transitions_r1 (customer_id, version, "));
        assert!(pg
            .text
            .contains("(E'c1'::text), (NULL::int8), (NULL::text), (E'lead'::text)"));
        assert!(pg.args.is_empty());
        let lite = render(Backend::Sqlite, &c, "");
        assert!(
            lite.text.ends_with("VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            "{}",
            lite.text
        );
        assert_eq!(lite.args.len(), 7);

        let last = col(&CUSTOMERS, "last_contact_at_us");
        let u = Change::Update(
            Update::of(&CUSTOMERS, "c1")
                .when(Cond::NullOrAtMost(last, 5))
                .set(last, 5)
                .set(col(&CUSTOMERS, "owner_id"), Value::Null),
        );
        assert_eq!(
            render(Backend::Postgres, &u, "").text,
            "WITH v (g, s0, s1, w0) AS (VALUES ((E'c1'::text), (5::int8), (NULL::text), \
             (5::int8))) UPDATE rm_customers SET last_contact_at_us = v.s0, owner_id = v.s1 \
             FROM v WHERE rm_customers.customer_id = v.g AND (rm_customers.last_contact_at_us \
             IS NULL OR rm_customers.last_contact_at_us <= v.w0)"
        );
        assert_eq!(
            render(Backend::Sqlite, &u, "_r1").text,
            "WITH v (g, s0, s1, w0) AS (VALUES ($1, $2, $3, $4)) UPDATE rm_customers_r1 SET \
             last_contact_at_us = v.s0, owner_id = v.s1 FROM v WHERE \
             rm_customers_r1.customer_id = v.g AND (rm_customers_r1.last_contact_at_us IS \
             NULL OR rm_customers_r1.last_contact_at_us <= v.w0)"
        );
        let up = Insert::into(&ANALYTICS_OWNERS)
            .set(col(&ANALYTICS_OWNERS, "customer_id"), "c1")
            .upsert();
        assert_eq!(
            render(Backend::Sqlite, &up, "").text,
            "INSERT INTO rm_analytics_owners (customer_id, owner_id) VALUES ($1, $2) \
             ON CONFLICT (customer_id) DO UPDATE SET owner_id = excluded.owner_id"
        );
    }
}
