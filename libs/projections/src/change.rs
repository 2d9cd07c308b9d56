//! What projecting an event gives: typed changes to the read-model tables declared in
//! [`crate::schema`]. Plain data, read by two appliers: [`crate::sql`] renders them as
//! SQL for the projector's transaction (PostgreSQL or SQLite), [`crate::memory`] folds
//! them in memory for a rebuild (and keeps what a read model remembers between events
//! for the SQL applier, [`crate::project::Memo`]). Each form means the same to both;
//! the verification (`crm projections verify`) compares the two results row by row.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use serde::Serialize;

use crate::schema::{Col, Kind, Table};

/// A value of a cell. Ids and names are text, instants microseconds since the epoch,
/// flags 0/1: the types both backends compare exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    /// Text a memo keeps as JSON (a customer's history), held typed while in memory.
    Doc(Doc),
}

/// A structured value a memo column stores as its JSON text. In memory it stays typed,
/// so a fold reads it back without parsing, and it is written as text once, when its
/// row is (a batch's last state of a memo row; a rebuild's final one), not per event.
/// Two documents are the same when their texts are.
#[derive(Clone)]
pub struct Doc(Arc<dyn Document>);

/// What a [`Doc`] can hold: anything serializable.
pub trait Document: Any + Debug + Send + Sync {
    fn json(&self) -> String;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Serialize + Debug + Send + Sync + 'static> Document for T {
    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Doc {
    pub fn new<T: Document>(value: T) -> Self {
        Self(Arc::new(value))
    }

    /// The value, if it is a `T`.
    pub fn get<T: Document>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }

    /// Its JSON text, as the column stores it.
    pub fn json(&self) -> String {
        self.0.json()
    }
}

impl Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for Doc {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.json() == other.json()
    }
}

impl Eq for Doc {}

impl std::hash::Hash for Doc {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.json().hash(state);
    }
}

impl PartialOrd for Doc {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Doc {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.json().cmp(&other.json())
    }
}

impl Value {
    /// A memo's typed value, read back: held typed (`T`), or stored as JSON text.
    pub fn document<T: Document + Clone + serde::de::DeserializeOwned>(&self) -> Option<T> {
        match self {
            Value::Doc(d) => d.get::<T>().cloned(),
            Value::Text(json) => serde_json::from_str(json).ok(),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One change to one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new row.
    Insert(Insert),
    /// A new row, or, when its key is taken, the existing row's other columns replaced.
    Upsert(Insert),
    /// Columns set in the rows of one group that meet every condition.
    Update(Update),
    /// Amounts added to one row of a counter table, created with them when absent.
    Add(Add),
    /// The row of a [`Kind::State`] table with this key removed, if there is one.
    Delete(Delete),
}

impl Change {
    pub fn table(&self) -> &'static Table {
        match self {
            Change::Insert(i) | Change::Upsert(i) => i.table,
            Change::Update(u) => u.table,
            Change::Add(a) => a.table,
            Change::Delete(d) => d.table,
        }
    }
}

/// The row of `table` whose key is `key` (the values of its key columns, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub table: &'static Table,
    pub key: Vec<Value>,
}

impl Delete {
    pub fn from(table: &'static Table, key: Vec<Value>) -> Change {
        debug_assert_eq!(table.kind, Kind::State, "{}", table.name);
        debug_assert_eq!(key.len(), table.primary_key.len(), "{}", table.name);
        Change::Delete(Delete { table, key })
    }
}

/// Amounts added to the row of a [`Kind::Counter`] table whose key is `key` (the values
/// of its key columns, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct Add {
    pub table: &'static Table,
    pub key: Vec<Value>,
    pub amounts: Vec<(Col, i64)>,
}

impl Add {
    /// Nothing added yet to the row of `table` with `key`.
    pub fn to(table: &'static Table, key: Vec<Value>) -> Self {
        debug_assert_eq!(table.kind, Kind::Counter, "{} is no counter", table.name);
        debug_assert_eq!(key.len(), table.primary_key.len(), "{}", table.name);
        Self {
            table,
            key,
            amounts: Vec::new(),
        }
    }

    /// `n` added to column `c`.
    pub fn add(mut self, c: Col, n: i64) -> Self {
        debug_assert_eq!(c.table, self.table.name, "{} is not a column here", c.name);
        self.amounts.push((c, n));
        self
    }

    pub fn change(self) -> Change {
        Change::Add(self)
    }
}

/// A row to insert: every column, in the table's order (NULL where not set).
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub table: &'static Table,
    pub values: Vec<Value>,
}

/// An update of the rows in group `key` (the table's first key column) meeting `when`.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub table: &'static Table,
    pub key: Value,
    pub when: Vec<Cond>,
    pub set: Vec<(Col, Set)>,
}

/// A condition on a row's current value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    IsNull(Col),
    /// NULL, or at most the value.
    NullOrAtMost(Col, i64),
}

impl Cond {
    /// The column it reads.
    pub fn col(&self) -> Col {
        match self {
            Cond::IsNull(c) | Cond::NullOrAtMost(c, _) => *c,
        }
    }
}

/// A new value for a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Set {
    To(Value),
    /// The current value plus this (the column is never NULL).
    Add(i64),
}

impl Insert {
    /// A row of `table` with every column NULL.
    pub fn into(table: &'static Table) -> Self {
        Self {
            table,
            values: vec![Value::Null; table.columns.len()],
        }
    }

    /// Column `c` set to `v`.
    pub fn set(mut self, c: Col, v: impl Into<Value>) -> Self {
        debug_assert_eq!(c.table, self.table.name, "{} is not a column here", c.name);
        self.values[c.index] = v.into();
        self
    }

    pub fn insert(self) -> Change {
        Change::Insert(self)
    }

    pub fn upsert(self) -> Change {
        debug_assert_ne!(self.table.kind, Kind::Log, "{}", self.table.name);
        Change::Upsert(self)
    }
}

impl Update {
    /// An update of group `key` of `table`, setting nothing yet.
    pub fn of(table: &'static Table, key: impl Into<Value>) -> Self {
        debug_assert!(
            matches!(table.kind, Kind::State | Kind::Memo),
            "{} takes no updates",
            table.name
        );
        let key = key.into();
        // `runs` tells groups apart as the database does: by a value of the column's type.
        debug_assert!(
            matches!(
                (&key, table.group_col().int),
                (Value::Int(_), true) | (Value::Text(_), false)
            ),
            "{}: group {key:?}",
            table.name
        );
        Self {
            table,
            key,
            when: Vec::new(),
            set: Vec::new(),
        }
    }

    pub fn when(mut self, c: Cond) -> Self {
        self.when.push(c);
        self
    }

    /// Column `c` set to `v` (never the group's column: a row stays in its group).
    pub fn set(mut self, c: Col, v: impl Into<Value>) -> Self {
        debug_assert_eq!(c.table, self.table.name, "{} is not a column here", c.name);
        debug_assert_ne!(c.index, 0, "{}: the group's column is not set", c.table);
        self.set.push((c, Set::To(v.into())));
        self
    }

    /// Column `c` set to `v` when there is one, else left as it is.
    pub fn set_some<V: Into<Value>>(self, c: Col, v: Option<V>) -> Self {
        match v {
            Some(v) => self.set(c, v),
            None => self,
        }
    }

    /// Column `c` increased by `n`.
    pub fn add(mut self, c: Col, n: i64) -> Self {
        debug_assert_eq!(c.table, self.table.name, "{} is not a column here", c.name);
        debug_assert_ne!(c.index, 0, "{}: the group's column is not set", c.table);
        self.set.push((c, Set::Add(n)));
        self
    }

    /// The change, unless it sets nothing.
    pub fn change(self) -> Option<Change> {
        (!self.set.is_empty()).then_some(Change::Update(self))
    }
}

impl Change {
    /// The value of its table's first column in every row it touches: the row's group
    /// (an update names it; an insert's row and a removed key begin with it, as every
    /// table's key begins with its first column). Changes of different groups touch
    /// different rows.
    fn group(&self) -> &Value {
        match self {
            Change::Insert(i) | Change::Upsert(i) => &i.values[0],
            Change::Update(u) => &u.key,
            Change::Add(a) => &a.key[0],
            Change::Delete(d) => &d.key[0],
        }
    }

    /// Whether `other` (of the same table) is written by the same statement as this,
    /// one row each: the same kind of change; for updates, the same columns set the same
    /// way under the same conditions (their values may differ).
    fn same_statement(&self, other: &Change) -> bool {
        match (self, other) {
            (Change::Insert(_), Change::Insert(_))
            | (Change::Upsert(_), Change::Upsert(_))
            | (Change::Delete(_), Change::Delete(_))
            | (Change::Add(_), Change::Add(_)) => true,
            (Change::Update(a), Change::Update(b)) => {
                let set = |(c, s): &(Col, Set)| (c.index, matches!(s, Set::Add(_)));
                let when = |c: &Cond| (c.col().index, matches!(c, Cond::NullOrAtMost(..)));
                (a.set.iter().map(set)).eq(b.set.iter().map(set))
                    && (a.when.iter().map(when)).eq(b.when.iter().map(when))
            }
            _ => false,
        }
    }

    /// Whether this and `other`, of one group, leave its rows the same in either order:
    /// two new rows; two updates, neither setting a column the other sets or reads in a
    /// condition (an amount added reads its column, which it also sets).
    fn commutes(&self, other: &Change) -> bool {
        let (a, b) = match (self, other) {
            (Change::Insert(_), Change::Insert(_)) => return true,
            (Change::Update(a), Change::Update(b)) => (a, b),
            _ => return false,
        };
        // Neither sets a column the other sets or reads.
        let apart = |x: &Update, y: &Update| {
            (x.set.iter()).all(|(c, _)| {
                !(y.set.iter()).any(|(d, _)| d.index == c.index)
                    && !(y.when.iter()).any(|w| w.col().index == c.index)
            })
        };
        apart(a, b) && apart(b, a)
    }
}

/// The changes of one table, in order, as runs in the order to write them; each run
/// holds changes written by one statement ([`Change::same_statement`]).
///
/// Changes of different groups touch different rows, so they may be written in any
/// order; so may two of one group that commute ([`Change::commutes`]). So the changes
/// are taken in order into spans, each written as one run per kind of statement in the
/// order each kind first appears in it; a change joins the span unless an earlier change
/// of its group there does not commute with it and would be written with it or after it
/// (then the span is written and the change begins the next). A table that a batch
/// touches a few times per customer becomes a few statements, where it was one per
/// change (each planned by the database on its own).
pub(crate) fn runs<'c>(changes: &[&'c Change]) -> Vec<Vec<&'c Change>> {
    let mut out = Vec::new();
    let mut span: Vec<Vec<&Change>> = Vec::new();
    // Per group, its changes in the span with the run each is in.
    let mut groups: HashMap<&Value, Vec<(usize, &Change)>> = HashMap::new();
    for &c in changes {
        let mut run = (span.iter().position(|r| r[0].same_statement(c))).unwrap_or(span.len());
        let earlier = groups.get(c.group());
        if earlier.is_some_and(|g| g.iter().any(|(r, d)| *r >= run && !d.commutes(c))) {
            out.append(&mut span);
            groups.clear();
            run = 0;
        }
        groups.entry(c.group()).or_default().push((run, c));
        match span.get_mut(run) {
            Some(same) => same.push(c),
            None => span.push(vec![c]),
        }
    }
    out.append(&mut span);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{col, CUSTOMERS};

    fn contact(customer: &str, at: i64) -> Change {
        let last = col(&CUSTOMERS, "last_contact_at_us");
        Change::Update(
            Update::of(&CUSTOMERS, customer)
                .when(Cond::NullOrAtMost(last, at))
                .set(last, at),
        )
    }

    fn owner(customer: &str, manager: &str) -> Change {
        Change::Update(Update::of(&CUSTOMERS, customer).set(col(&CUSTOMERS, "owner_id"), manager))
    }

    /// The customers of each run of `changes`.
    fn runs_of(changes: &[Change]) -> Vec<Vec<String>> {
        let refs: Vec<&Change> = changes.iter().collect();
        let customer = |c: &&Change| match c.group() {
            Value::Text(t) => t.clone(),
            v => format!("{v:?}"),
        };
        runs(&refs)
            .iter()
            .map(|run| run.iter().map(customer).collect())
            .collect()
    }

    /// Changes of the same shape share a run until a customer comes back with a change
    /// that must follow one of its own in the span; that one starts the next span, so a
    /// customer's changes keep their order where it matters.
    #[test]
    fn runs_gather_one_shape_until_a_customer_comes_back() {
        let changes = [
            contact("a", 1),
            owner("a", "m1"),
            contact("b", 2),
            owner("c", "m2"),
            contact("c", 3),
            contact("a", 4),
            owner("b", "m3"),
        ];
        assert_eq!(
            runs_of(&changes),
            [vec!["a", "b", "c"], vec!["a", "c"], vec!["a"], vec!["b"]]
        );
        // A new row, then what updates it: written in that order, each kind at once.
        let row = |c: &str| Insert::into(&CUSTOMERS).set(col(&CUSTOMERS, "customer_id"), c);
        let changes = [
            row("a").insert(),
            owner("a", "m"),
            row("b").insert(),
            owner("b", "m"),
        ];
        assert_eq!(runs_of(&changes), [vec!["a", "b"], vec!["a", "b"]]);
    }

    /// An update whose condition reads what a later update of its customer sets stays
    /// before it, even where its kind of statement first appears later in the span.
    #[test]
    fn a_condition_on_what_another_sets_keeps_their_order() {
        let pool_name = |customer: &str| {
            Change::Update(
                Update::of(&CUSTOMERS, customer)
                    .when(Cond::IsNull(col(&CUSTOMERS, "owner_id")))
                    .set(col(&CUSTOMERS, "display_name"), "pool"),
            )
        };
        let changes = [owner("x", "m1"), pool_name("a"), owner("a", "m2")];
        assert_eq!(runs_of(&changes), [vec!["x"], vec!["a"], vec!["a"]]);
        // Where its kind of statement comes later anyway, it joins the span.
        let changes = [
            pool_name("x"),
            pool_name("a"),
            owner("a", "m2"),
            owner("y", "m"),
        ];
        assert_eq!(runs_of(&changes), [vec!["x", "a"], vec!["a", "y"]]);
        assert!(!pool_name("a").commutes(&owner("a", "m")));
    }

    /// Conditions and columns set make the shape, not their values; the kind of change
    /// does too.
    #[test]
    fn one_statement_takes_one_shape() {
        assert!(contact("a", 1).same_statement(&contact("b", 9)));
        assert!(!contact("a", 1).same_statement(&owner("b", "m")));
        let name = col(&CUSTOMERS, "display_name");
        let plain = Change::Update(Update::of(&CUSTOMERS, "a").set(name, "x"));
        let guarded = Change::Update(
            Update::of(&CUSTOMERS, "a")
                .when(Cond::IsNull(name))
                .set(name, "x"),
        );
        let added =
            Change::Update(Update::of(&CUSTOMERS, "a").add(col(&CUSTOMERS, "aum_minor"), 1));
        let set = Change::Update(Update::of(&CUSTOMERS, "a").set(col(&CUSTOMERS, "aum_minor"), 1));
        assert!(!plain.same_statement(&guarded));
        assert!(contact("a", 1).commutes(&owner("a", "m")));
        assert!(!contact("a", 1).commutes(&contact("a", 2)));
        assert!(!guarded.commutes(&plain), "one sets what the other reads");
        assert!(!added.commutes(&set));
        assert!(!added.same_statement(&set));
        let row = Insert::into(&CUSTOMERS).set(col(&CUSTOMERS, "customer_id"), "a");
        assert!(row.clone().insert().same_statement(&row.clone().insert()));
        assert!(!row.clone().insert().same_statement(&row.upsert()));
    }

    /// Every table's key begins with its first column, the group that
    /// [`Change::group`] reads off a change; every table but a log has a key.
    #[test]
    fn every_key_begins_with_the_first_column() {
        for t in crate::schema::PROJECTIONS.iter().flat_map(|p| p.tables) {
            match t.primary_key.first() {
                Some(first) => assert_eq!(*first, t.columns[0].0, "{}", t.name),
                None => assert_eq!(t.kind, Kind::Log, "{} has no key", t.name),
            }
        }
    }
}
