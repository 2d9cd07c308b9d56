//! The in-memory applier: a rebuild folds the log into the rows a read model ends up
//! with by applying the same changes ([`crate::project`]) the projector's SQL applies,
//! then bulk-loads them ([`crate::load`]). `crm projections verify` compares this path
//! with the live, SQL-built tables row by row, so any difference between the two
//! appliers is found.
//!
//! Rows of [`Kind::Log`] tables are handed out page by page; rows of [`Kind::State`] and
//! [`Kind::Memo`] tables are kept in memory, grouped by their first key column, and
//! counters by their key, until the end.
//!
//! The projector's SQL applier uses the same structure as its cache of what a read model
//! remembers ([`Memory::cache`]): the memo rows of a batch's customers, read before the
//! batch is projected and kept up to date as its events are.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use crm_domain::Payload;
use crm_eventstore::RecordedEvent;

use crate::calendar::Calendar;
use crate::change::{Add, Change, Cond, Delete, Insert, Set, Update, Value};
use crate::plan::{verdict, Verdict};
use crate::project::Memo;
use crate::schema::{Kind, Projection, Table};

pub type Row = Vec<Value>;

/// The rows of one table.
enum Held {
    /// Not yet handed out.
    Log(Vec<Row>),
    /// By group (first key column).
    State(HashMap<Value, Vec<Row>>),
    /// By key.
    Counter(HashMap<Vec<Value>, Row>),
    /// Not kept (a cache keeps only what is remembered).
    Dropped,
}

/// The in-memory state of one read model's rebuild.
pub struct Memory {
    projection: Projection,
    /// Per stream, the last version applied.
    positions: HashMap<String, i64>,
    /// Apply nothing beyond these versions (a verification's snapshot of the live ones).
    limits: Option<Arc<HashMap<String, i64>>>,
    /// Per table of the projection, in its order.
    tables: Vec<Held>,
    /// Per table, the positions of its key columns.
    keys: Vec<Vec<usize>>,
    /// The zone the KPI ledger counts local days in.
    calendar: Calendar,
    /// Whether what follows from the memo rows' final states is added at the end (a
    /// rebuild: [`Memo::settles_at_end`]).
    settles: bool,
}

impl Memory {
    pub fn new(projection: Projection, limits: Option<Arc<HashMap<String, i64>>>) -> Self {
        Self {
            settles: true,
            ..Self::holding(projection, limits, |_| true)
        }
    }

    /// What `projection` remembers between events, and nothing else: the SQL applier's
    /// cache, filled with [`Memory::load`].
    pub fn cache(projection: Projection) -> Self {
        Self::holding(projection, None, |t| t.kind == Kind::Memo)
    }

    fn holding(
        projection: Projection,
        limits: Option<Arc<HashMap<String, i64>>>,
        keep: impl Fn(&Table) -> bool,
    ) -> Self {
        let tables = projection
            .tables
            .iter()
            .map(|t| match t.kind {
                _ if !keep(t) => Held::Dropped,
                Kind::Log => Held::Log(Vec::new()),
                Kind::State | Kind::Memo => Held::State(HashMap::new()),
                Kind::Counter => Held::Counter(HashMap::new()),
            })
            .collect();
        let keys = projection.tables.iter().map(Table::key_columns).collect();
        Self {
            projection,
            positions: HashMap::new(),
            limits,
            tables,
            keys,
            calendar: Calendar::UTC,
            settles: false,
        }
    }

    /// The same, counting the KPI ledger's days in `calendar`.
    pub fn in_zone(mut self, calendar: Calendar) -> Self {
        self.calendar = calendar;
        self
    }

    /// Fold one event (read in log order). Returns whether it was applied.
    pub fn apply<P: Payload>(&mut self, e: &RecordedEvent<P>) -> bool {
        let version = e.stream_version as i64;
        if let Some(limits) = &self.limits {
            if version > limits.get(&e.stream_id).copied().unwrap_or(0) {
                return false;
            }
        }
        // The stream's id is copied once, at its first event.
        match self.positions.get_mut(&e.stream_id) {
            Some(current) => match verdict(*current, version) {
                Verdict::Apply => *current = version,
                Verdict::Duplicate | Verdict::Early => return false,
            },
            None => match verdict(0, version) {
                Verdict::Apply => {
                    self.positions.insert(e.stream_id.clone(), version);
                }
                Verdict::Duplicate | Verdict::Early => return false,
            },
        }
        // An event that cannot be projected moves its stream on and changes nothing.
        if let Ok(decoded) = crate::project::decode(e) {
            for c in crate::project::changes(&self.projection, e, &decoded, self) {
                self.change(c);
            }
        }
        true
    }

    /// Rows of `table` read from the database (a cache's memo rows).
    pub fn load(&mut self, table: &str, rows: Vec<Row>) {
        let slot = self.slot(table);
        if let Held::State(groups) = &mut self.tables[slot] {
            for row in rows {
                groups.entry(row[0].clone()).or_default().push(row);
            }
        }
    }

    /// Apply the changes among `changes` that touch what a cache keeps (memo tables).
    pub fn remember(&mut self, changes: &[Change]) {
        for c in changes.iter().filter(|c| c.table().kind == Kind::Memo) {
            self.change(c.clone());
        }
    }

    fn slot(&self, table: &str) -> usize {
        // Names come from the same declarations: the same address, mostly; only when
        // none has it are the names compared.
        let tables = self.projection.tables;
        let same_address =
            |t: &Table| t.name.as_ptr() == table.as_ptr() && t.name.len() == table.len();
        tables
            .iter()
            .position(same_address)
            .or_else(|| tables.iter().position(|t| t.name == table))
            .unwrap_or_else(|| panic!("{table} is not a table of {}", self.projection.name))
    }

    fn change(&mut self, c: Change) {
        match c {
            Change::Insert(i) => self.insert(i, false),
            Change::Upsert(i) => self.insert(i, true),
            Change::Update(u) => self.update(u),
            Change::Add(a) => self.add(a),
            Change::Delete(d) => self.delete(d),
        }
    }

    fn delete(&mut self, d: Delete) {
        let slot = self.slot(d.table.name);
        let keys = &self.keys[slot];
        if let Held::State(groups) = &mut self.tables[slot] {
            if let Some(group) = groups.get_mut(&d.key[0]) {
                group.retain(|r| !keys.iter().zip(&d.key).all(|(k, v)| r[*k] == *v));
            }
        }
    }

    fn insert(&mut self, i: Insert, replace: bool) {
        let Insert { table, values } = i;
        let slot = self.slot(table.name);
        let keys = &self.keys[slot];
        match &mut self.tables[slot] {
            Held::Dropped | Held::Counter(_) => {}
            Held::Log(rows) => rows.push(values),
            Held::State(groups) => {
                let group = groups.entry(values[0].clone()).or_default();
                let same = group
                    .iter_mut()
                    .find(|r| replace && keys.iter().all(|k| r[*k] == values[*k]));
                match same {
                    Some(row) => *row = values,
                    None => group.push(values),
                }
            }
        }
    }

    fn add(&mut self, a: Add) {
        let slot = self.slot(a.table.name);
        let Held::Counter(rows) = &mut self.tables[slot] else {
            return;
        };
        let Add {
            table,
            key,
            amounts,
        } = a;
        let row = match rows.entry(key) {
            Entry::Occupied(row) => row.into_mut(),
            Entry::Vacant(new) => {
                let mut row = vec![Value::Int(0); table.columns.len()];
                for (i, v) in self.keys[slot].iter().zip(new.key()) {
                    row[*i] = v.clone();
                }
                new.insert(row)
            }
        };
        for (c, n) in &amounts {
            if let Value::Int(v) = &mut row[c.index] {
                *v += n;
            }
        }
    }

    fn update(&mut self, u: Update) {
        let slot = self.slot(u.table.name);
        let Held::State(groups) = &mut self.tables[slot] else {
            return;
        };
        let Some(group) = groups.get_mut(&u.key) else {
            return;
        };
        for row in group.iter_mut().filter(|r| meets(r, &u.when)) {
            for (c, set) in &u.set {
                match set {
                    Set::To(v) => row[c.index] = v.clone(),
                    Set::Add(n) => {
                        if let Value::Int(v) = &mut row[c.index] {
                            *v += n;
                        }
                    }
                }
            }
        }
    }

    /// The rows of [`Kind::Log`] tables gathered so far, to be written.
    pub fn take_pending(&mut self) -> Vec<(&'static Table, Vec<Row>)> {
        let p = self.projection;
        p.tables
            .iter()
            .zip(&mut self.tables)
            .filter_map(|(t, held)| match held {
                Held::Log(rows) if !rows.is_empty() => {
                    // The next page's rows: about as many, room made once.
                    let next = Vec::with_capacity(rows.len());
                    Some((t, std::mem::replace(rows, next)))
                }
                _ => None,
            })
            .collect()
    }

    /// Add what the memo rows' final states add ([`crate::project::settle`]), one row
    /// at a time.
    fn settle(&mut self) {
        let p = self.projection;
        for (slot, t) in p.tables.iter().enumerate() {
            if t.kind != Kind::Memo {
                continue;
            }
            // Settling writes other tables only: the memo's rows are read in place.
            let held = std::mem::replace(&mut self.tables[slot], Held::Dropped);
            if let Held::State(groups) = &held {
                for row in groups.values().flatten() {
                    for c in crate::project::settle(t, row, &self.calendar) {
                        self.change(c);
                    }
                }
            }
            self.tables[slot] = held;
        }
    }

    /// Every table of the projection (named without suffix; the positions table's
    /// columns are [`POSITIONS`]) with the rows it still needs.
    pub fn into_tables(mut self) -> Vec<(String, &'static Table, Vec<Row>)> {
        if self.settles {
            self.settle();
        }
        let p = self.projection;
        let mut out: Vec<(String, &'static Table, Vec<Row>)> = p
            .tables
            .iter()
            .zip(self.tables)
            .map(|(t, held)| {
                let rows = match held {
                    Held::Log(rows) => rows,
                    // In group order, so a range of groups (complaints by when they were
                    // logged, wins by instant) lies together, and a customer's rows too.
                    Held::State(groups) => {
                        let mut groups: Vec<(Value, Vec<Row>)> = groups.into_iter().collect();
                        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        groups.into_iter().flat_map(|(_, rows)| rows).collect()
                    }
                    // In key order, so a range of keys (the KPI ledger's days) lies together.
                    Held::Counter(rows) => {
                        let mut rows: Vec<(Vec<Value>, Row)> = rows.into_iter().collect();
                        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        rows.into_iter().map(|(_, row)| row).collect()
                    }
                    Held::Dropped => Vec::new(),
                };
                (t.name.to_string(), t, rows)
            })
            .collect();
        out.push((
            p.positions_table(),
            &POSITIONS,
            self.positions
                .into_iter()
                .map(|(s, v)| vec![Value::Text(s), Value::Int(v)])
                .collect(),
        ));
        out
    }
}

impl Memo for Memory {
    /// The first row in group `key` of `table`.
    fn row(&self, table: &'static Table, key: &Value) -> Option<&[Value]> {
        let Held::State(groups) = &self.tables[self.slot(table.name)] else {
            panic!("{} is read back, so it must be remembered", table.name);
        };
        groups.get(key).and_then(|g| g.first()).map(Vec::as_slice)
    }

    fn calendar(&self) -> Calendar {
        self.calendar
    }

    fn settles_at_end(&self) -> bool {
        self.settles
    }
}

/// Whether `row` meets every condition.
fn meets(row: &[Value], when: &[Cond]) -> bool {
    when.iter().all(|c| match c {
        Cond::IsNull(c) => row[c.index] == Value::Null,
        Cond::NullOrAtMost(c, v) => match &row[c.index] {
            Value::Int(x) => x <= v,
            _ => true,
        },
    })
}

/// The columns of a projection's positions table (its name is per projection).
pub static POSITIONS: Table = Table {
    name: "positions",
    kind: Kind::State,
    columns: &[("stream_id", "TEXT"), ("version", "BIGINT")],
    primary_key: &["stream_id"],
    indexes: &[],
    since: 1001,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{col, CUSTOMERS};

    /// As SQL's `(c IS NULL OR c <= v)` and `c IS NULL`.
    #[test]
    fn conditions_mean_what_they_mean_in_sql() {
        let last = col(&CUSTOMERS, "last_contact_at_us");
        let mut row = vec![Value::Null; CUSTOMERS.columns.len()];
        assert!(meets(
            &row,
            &[Cond::NullOrAtMost(last, 5), Cond::IsNull(last)]
        ));
        row[last.index] = Value::Int(5);
        assert!(meets(&row, &[Cond::NullOrAtMost(last, 5)]));
        assert!(!meets(&row, &[Cond::NullOrAtMost(last, 4)]));
        assert!(!meets(&row, &[Cond::IsNull(last)]));
    }
}
