//! Query parameters that know their PostgreSQL type.
//!
//! Behind a transaction-mode pooler (PgBouncer 1.18, say) consecutive transactions of one
//! client may run on different server connections, so a statement prepared by name on one is
//! unknown on the next. There the service sends every statement unnamed, parsed, bound and
//! executed in one go (`query_typed`), which needs each parameter's type up front: the type each
//! Rust type stands for, declared once here (it is the type the server would infer anyway; a
//! mismatch fails loudly as "operator does not exist", never silently).

use chrono::{DateTime, Utc};
use tokio_postgres::types::{ToSql, Type};

/// A value a query binds: encodable, and aware of the PostgreSQL type it is sent as.
pub trait Param: Sync {
    fn sql_type(&self) -> Type;
    fn as_sql(&self) -> &(dyn ToSql + Sync);
}

/// The query parameters of every `db` function.
pub type Params<'a> = &'a [&'a dyn Param];

/// The PostgreSQL type a Rust type is sent as.
pub trait SqlType {
    const TYPE: Type;
}

impl<T: SqlType + ToSql + Sync> Param for T {
    fn sql_type(&self) -> Type {
        T::TYPE
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        self
    }
}

/// NULL or a value, sent as the value's type either way.
impl<T: SqlType> SqlType for Option<T> {
    const TYPE: Type = T::TYPE;
}

macro_rules! sql_types {
    ($($rust:ty => $sql:expr),* $(,)?) => {
        $(impl SqlType for $rust { const TYPE: Type = $sql; })*
    };
}

sql_types! {
    bool => Type::BOOL,
    i32 => Type::INT4,
    i64 => Type::INT8,
    f64 => Type::FLOAT8,
    String => Type::TEXT,
    &str => Type::TEXT,
    &[u8] => Type::BYTEA,
    Vec<u8> => Type::BYTEA,
    uuid::Uuid => Type::UUID,
    Vec<uuid::Uuid> => Type::UUID_ARRAY,
    &[uuid::Uuid] => Type::UUID_ARRAY,
    Vec<&str> => Type::TEXT_ARRAY,
    Vec<String> => Type::TEXT_ARRAY,
    &[String] => Type::TEXT_ARRAY,
    Vec<i64> => Type::INT8_ARRAY,
    Vec<Option<&str>> => Type::TEXT_ARRAY,
    DateTime<Utc> => Type::TIMESTAMPTZ,
    serde_json::Value => Type::JSONB,
}

/// The framework's form of the parameters, for prepared (named) statements.
pub(super) fn untyped<'a>(params: Params<'a>) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_sql()).collect()
}

/// The parameters with their types, for unnamed statements.
pub(super) fn typed<'a>(params: Params<'a>) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().map(|p| (p.as_sql(), p.sql_type())).collect()
}
