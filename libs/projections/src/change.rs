//! What projecting an event gives: typed changes to the read-model tables declared in
//! [`crate::schema`]. Plain data, read by two appliers: [`crate::sql`] renders them as
//! SQL for the projector's transaction (PostgreSQL or SQLite), [`crate::memory`] folds
//! them in memory for a rebuild (and keeps what a read model remembers between events
//! for the SQL applier, [`crate::project::Memo`]). Each form means the same to both;
//! the verification (`crm projections verify`) compares the two results row by row.

use std::any::Any;
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
        Self {
            table,
            key: key.into(),
            when: Vec::new(),
            set: Vec::new(),
        }
    }

    pub fn when(mut self, c: Cond) -> Self {
        self.when.push(c);
        self
    }

    /// Column `c` set to `v`.
    pub fn set(mut self, c: Col, v: impl Into<Value>) -> Self {
        debug_assert_eq!(c.table, self.table.name, "{} is not a column here", c.name);
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
        self.set.push((c, Set::Add(n)));
        self
    }

    /// The change, unless it sets nothing.
    pub fn change(self) -> Option<Change> {
        (!self.set.is_empty()).then_some(Change::Update(self))
    }
}
