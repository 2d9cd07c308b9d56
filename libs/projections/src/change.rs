//! What projecting an event gives: typed changes to the read-model tables declared in
//! [`crate::schema`]. Plain data, read by two appliers: [`crate::sql`] renders them as
//! SQL for the projector's transaction (PostgreSQL or SQLite), [`crate::memory`] folds
//! them in memory for a rebuild. Each form means the same to both; the verification
//! (`crm projections verify`) compares the two results row by row.

use crate::schema::{Col, Kind, Table};

/// A value of a cell. Ids and names are text, instants microseconds since the epoch,
/// flags 0/1: the types both backends compare exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
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
}

impl Change {
    pub fn table(&self) -> &'static Table {
        match self {
            Change::Insert(i) | Change::Upsert(i) => i.table,
            Change::Update(u) => u.table,
        }
    }
}

/// A row to insert: every column, in the table's order (NULL where not set).
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub table: &'static Table,
    pub values: Vec<Value>,
    /// A column of this row left NULL takes a value read from another table.
    pub fill: Option<Fill>,
}

/// `col` of the new row, when NULL, becomes `from` of the row of `from`'s table whose
/// group (first key column) is `key`, or stays NULL if there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub col: Col,
    pub from: Col,
    pub key: Value,
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
            fill: None,
        }
    }

    /// Column `c` set to `v`.
    pub fn set(mut self, c: Col, v: impl Into<Value>) -> Self {
        debug_assert_eq!(c.table, self.table.name, "{} is not a column here", c.name);
        self.values[c.index] = v.into();
        self
    }

    /// Column `c`, when NULL, filled from `from` of the row in group `key` of its table.
    pub fn fill(mut self, c: Col, from: Col, key: impl Into<Value>) -> Self {
        debug_assert_eq!(c.table, self.table.name, "{} is not a column here", c.name);
        self.fill = Some(Fill {
            col: c,
            from,
            key: key.into(),
        });
        self
    }

    pub fn insert(self) -> Change {
        Change::Insert(self)
    }

    pub fn upsert(self) -> Change {
        debug_assert_eq!(self.table.kind, Kind::State, "{}", self.table.name);
        Change::Upsert(self)
    }
}

impl Update {
    /// An update of group `key` of `table`, setting nothing yet.
    pub fn of(table: &'static Table, key: impl Into<Value>) -> Self {
        debug_assert_eq!(table.kind, Kind::State, "{} only grows", table.name);
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
